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
