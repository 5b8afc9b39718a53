"""The file formats automix reads and writes: the one table, importable without numpy
(the command line checks names against it before anything heavy is loaded)."""

#: Extensions automix reads. MP3 depends on the libsndfile build (1.1+ reads it);
#: pedalboard decodes it otherwise.
READABLE_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff", ".ogg", ".mp3")

#: Extension -> the container its content must be.
EXTENSION_CONTAINERS = {".wav": "WAV", ".flac": "FLAC", ".aif": "AIFF", ".aiff": "AIFF", ".ogg": "OGG", ".mp3": "MP3"}

#: Extension -> libsndfile container written for it.
WRITABLE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".aif": "AIFF", ".aiff": "AIFF"}

#: ``--bit-depth`` value -> libsndfile subtype.
BIT_DEPTHS = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}

#: Extension -> lossy codec (a name in ``automix.master.codecs.CODECS``), written through
#: PyAV by ``automix.io.lossy``. AAC goes into MP4 for ``.aac`` too: only MP4's edit list
#: carries the encoder delay to the decoder (raw ADTS decodes 1024 samples late). Ogg
#: Vorbis is left out: PyAV's wheels carry only FFmpeg's experimental native encoder, which
#: ignores the bitrate and measured 14.0 dB SNR on a -14 LUFS master where MP3 320k gave
#: 21.6 dB and AAC 256k 20.1 dB.
LOSSY_FORMATS = {".mp3": "mp3", ".opus": "opus", ".m4a": "aac", ".aac": "aac"}

#: ``--format`` name -> (lossy codec, extension it writes).
LOSSY_FORMAT_NAMES = {"mp3": ("mp3", ".mp3"), "opus": ("opus", ".opus"), "aac": ("aac", ".m4a"), "m4a": ("aac", ".m4a")}
