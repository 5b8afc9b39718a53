"""Lossy codecs as a listener hears them: encode, decode, and the peaks that come back.

A lossy encoder throws away what it thinks is inaudible and quantises the rest in the
frequency domain; the decoded waveform is the master plus a noise-like error whose
peaks add to the master's own. A master limited to -1 dBTP routinely decodes over it
(issue 10, item 5: after AAC 256k, 5 of 11 masters). This module encodes a master in
memory with the codecs streaming platforms use, decodes it back, measures the decoded
true peak with the project's BS.1770 meter, and works out how much lower the master
must sit for every decoded version to stay under the ceiling.

Codecs run through PyAV (the ``av`` package), which ships FFmpeg's libraries in its
wheels, so no system ffmpeg is needed. Encoding is in memory (:class:`io.BytesIO`) and
bit-exact flags are set on the container and the encoder, so the same input gives the
same bytes run after run (every encoder below was checked for this).

Intended use (the mastering loop)
---------------------------------
After the loop has rendered a master that meets loudness and ceiling, call
:func:`codec_safe_gain_db` (``verify=False``) on the final, quantised master. If it
returns a positive ``attenuation_db``, lower the limiter's threshold by that much and
render again: the gain that sets loudness stays, so loudness is still met -- by more
limiting -- and the peaks that survive the codec sit lower. Call it again on the new
render (the limiter changes the waveform, not only its level) until it returns 0; on
the masters measured one re-render was enough. The report should show, per codec and
bitrate, the decoded true peak of the first render and of the final one, the total
attenuation, the limiting it cost, and the rate each peak was measured at.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from automix.errors import AutomixError
from automix.io.audio import resample
from automix.measure import loudness
from automix.measure.loudness import true_peak_dbtp


@dataclass(frozen=True)
class CodecSpec:
    """How automix runs one lossy codec.

    Attributes
    ----------
    name : str
        The name users type (``--codec-safe mp3,aac``).
    encoder : str
        FFmpeg encoder name as PyAV opens it.
    container : str
        FFmpeg muxer the packets go into. The container matters: it is what carries the
        encoder delay (priming samples) to the decoder, so the decoded audio lines up
        with the input. MP3's LAME header, MP4's edit list and Ogg Opus's pre-skip all do;
        raw ADTS AAC does not (it decodes 1024 samples late).
    sample_format : str
        Sample format handed to the encoder (float where the encoder takes it).
    default_kbps : int
        Bitrate used when none is given: the highest one a platform streams (below).
    sample_rates_hz : tuple of int
        Rates the encoder accepts; other rates are resampled (soxr) before encoding.
        Empty means any rate.
    note : str
        What to know about this encoder's fidelity to what platforms use.
    options : mapping
        Extra FFmpeg encoder options.
    probe_offsets_db : tuple of float
        Level offsets (dB below the master) a robust measurement encodes at; the
        codec's robust decoded peak is the worst of them, referred back to the master's
        level. One probe for codecs whose decoded peak follows level smoothly.
    preroll_frames : int
        Samples of pre-roll encoded before the audio and hidden by the container's edit
        list (the packets carry negative timestamps, which the MP4 muxer turns into an
        edit list that decoders skip): the start of the audio mirrored in time under a
        raised-cosine fade-in, so the encoder never sees a step from its silent priming
        into a loud first frame. 0 for none.
    """

    name: str
    encoder: str
    container: str
    sample_format: str
    default_kbps: int
    sample_rates_hz: tuple[int, ...]
    note: str
    options: Mapping[str, str] = field(default_factory=dict)
    probe_offsets_db: tuple[float, ...] = (0.0,)
    preroll_frames: int = 0


_MPEG_RATES = (48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)

#: The one table of lossy codecs automix knows.
CODECS: dict[str, CodecSpec] = {
    "mp3": CodecSpec(
        "mp3", "libmp3lame", "mp3", "fltp", 320, _MPEG_RATES,
        "LAME, constant bitrate. 320 kbit/s is the MPEG-1 Layer III maximum.",
    ),
    "aac": CodecSpec(
        "aac", "aac", "mp4", "fltp", 256, (96000, 88200, 64000) + _MPEG_RATES + (7350,),
        "FFmpeg's native AAC-LC encoder: PyAV's wheels carry neither libfdk_aac nor "
        "Apple's encoder, the ones platforms use. Its decoded peak is erratic in level: "
        "moving the master by 0.01-0.2 dB moves the decoded peak by a standard deviation "
        "of 0.15-0.25 dB and by up to +1.8 dB (-0.16 -> +1.66 dBTP for 0.05 dB less "
        "level on a -9 LUFS master; mp3 and opus: <= 0.07 dB), so a robust measurement "
        "takes the worst of four levels 0.05 dB apart. Hard-clipped tones decode 1-3 dB "
        "over their true peak, and an abrupt full-scale start up to 5 dB over. "
        "Its first frame is the worst case: a master that starts loud decoded 2-5 dB over "
        "its true peak at some levels (+3.88 dBTP from a -1.05 dBTP master). Two frames of "
        "mirrored pre-roll, hidden by the MP4 edit list, remove that: the decoded peak of "
        "the same master over ten levels 0.025 dB apart then stays within -1.01..-0.93 dBTP "
        "(without: -0.91..+3.88), aligned sample for sample.",
        probe_offsets_db=(0.0, 0.05, 0.1, 0.15),
        preroll_frames=2048,
    ),
    "opus": CodecSpec(
        "opus", "libopus", "ogg", "flt", 160, (48000,),
        "libopus (the reference encoder), variable bitrate. Opus runs at 48 kHz only: "
        "other rates are resampled with soxr first and the decoded peak is measured at "
        "48 kHz, the rate every Opus decoder outputs.",
    ),
    "vorbis": CodecSpec(
        "vorbis", "vorbis", "ogg", "fltp", 320, (),
        "FFmpeg's native Vorbis encoder, marked experimental (PyAV's wheels lack "
        "libvorbis, the encoder Spotify's streams come from). It ignores the bitrate "
        "(quality-based: 160-190 kbit/s measured when 320 was asked for), so treat its "
        "peaks as indicative only.",
        {"strict": "experimental"},
    ),
}

#: Streaming platforms' lossy formats at their highest regular quality, (codec, kbit/s).
#: Sources: Spotify, support.spotify.com "Audio quality" (desktop/mobile "Very high"
#: ~320 kbit/s, Ogg Vorbis; web player AAC 256 kbit/s for Premium); Apple, "Apple Digital
#: Masters" technology brief (AAC 256 kbit/s); YouTube publishes no audio bitrates: the
#: figures are its DASH audio formats as listed by the community (itag 251 Opus VBR up to
#: ~160 kbit/s, itag 140 AAC-LC 128 kbit/s; gist AgentOak/34d47c65b1d28829bb17c24c04a0096f,
#: 2021). Where no figure was found the defaults (mp3 320, aac 256, opus 160) stand.
PLATFORM_CODECS: dict[str, tuple[tuple[str, int], ...]] = {
    "spotify": (("vorbis", 320), ("aac", 256)),
    "apple": (("aac", 256),),
    "youtube": (("opus", 160), ("aac", 128)),
}

#: Extra attenuation on top of the measured excess. The decoded peak is not exactly
#: linear in level: the encoder's quantisation decisions move with it. Measured on four
#: 20 s masters (synthetic and automix's sample songs, -9 and -14 LUFS) moved by 12
#: levels over 0.2 dB, MP3 320k and Opus 160k peaks stayed within a standard deviation
#: of 0.07 dB of dB-for-dB and never rose more than 0.10 dB above it: 0.1 dB covers
#: that at little cost in limiting. FFmpeg's AAC is far more erratic (its probes).
MARGIN_DB = 0.1
#: Encode-and-verify passes at most: the first correction is usually enough.
MAX_ITERATIONS = 4


def known_codecs() -> tuple[str, ...]:
    return tuple(CODECS)


def codec_spec(codec: str) -> CodecSpec:
    """The table entry for ``codec``; a clear error naming the known ones otherwise."""
    spec = CODECS.get(codec.strip().lower()) if isinstance(codec, str) else None
    if spec is None:
        raise AutomixError(f"unknown codec '{codec}' (known: {', '.join(CODECS)})")
    return spec


def parse_codecs(text: str) -> tuple[tuple[str, int], ...]:
    """Parse ``"mp3,aac:128,opus"`` into ``(("mp3", 320), ("aac", 128), ("opus", 160))``.

    A bare name takes the codec's default bitrate; ``name:kbps`` sets it.
    """
    parsed = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, kbps_text = item.partition(":")
        spec = codec_spec(name)
        if kbps_text:
            try:
                kbps = int(kbps_text)
            except ValueError:
                raise AutomixError(f"bad bitrate '{kbps_text}' for {spec.name} (kbit/s, e.g. {spec.name}:{spec.default_kbps})") from None
        else:
            kbps = spec.default_kbps
        parsed.append((spec.name, _check_kbps(spec, kbps)))
    if not parsed:
        raise AutomixError(f"no codec named (known: {', '.join(CODECS)})")
    return tuple(parsed)


def _check_kbps(spec: CodecSpec, kbps: int) -> int:
    if not 8 <= kbps <= 512:
        raise AutomixError(f"bitrate {kbps} kbit/s for {spec.name} is out of range (8 to 512)")
    return int(kbps)


def _av():
    try:
        import av  # optional dependency: imported where it is needed
    except ImportError:
        raise AutomixError("codec checks need PyAV: pip install av") from None
    return av


def codec_rate(spec: CodecSpec, sample_rate: int) -> int:
    """The rate ``spec`` encodes ``sample_rate`` audio at.

    The input rate if the encoder takes it; else the highest accepted rate that divides
    it (96 kHz -> 48 kHz, 88.2 kHz -> 44.1 kHz, a clean 2:1); else 48 kHz.
    """
    rates = spec.sample_rates_hz
    if not rates or sample_rate in rates:
        return sample_rate
    dividing = [rate for rate in rates if sample_rate % rate == 0]
    return max(dividing) if dividing else (48000 if 48000 in rates else max(rates))


def _layout(channels: int, spec: CodecSpec) -> str:
    if channels == 1:
        return "mono"
    if channels == 2:
        return "stereo"
    raise AutomixError(f"{spec.name} check takes mono or stereo audio, not {channels} channels")


def encode(samples: np.ndarray, sample_rate: int, codec: str, bitrate_kbps: int | None = None) -> bytes:
    """Encode float32 ``(channels, samples)`` into ``codec``'s container, in memory.

    Audio at a rate the encoder does not take is resampled first (soxr) to
    :func:`codec_rate`. The bytes are deterministic: the container and encoder run
    with FFmpeg's ``bitexact`` flags (no random Ogg serial numbers, no version strings).
    The result is a complete file (``.mp3``, ``.m4a``, ``.opus``/``.ogg``).
    """
    av = _av()
    spec = codec_spec(codec)
    kbps = _check_kbps(spec, spec.default_kbps if bitrate_kbps is None else bitrate_kbps)
    _check_audio(samples, sample_rate)
    layout = _layout(samples.shape[0], spec)
    rate = codec_rate(spec, sample_rate)
    samples = resample(np.asarray(samples, dtype=np.float32), sample_rate, rate)
    sample_rate = rate
    try:
        av.codec.Codec(spec.encoder, "w")
    except Exception:  # noqa: BLE001 - PyAV raises several types for a missing codec
        raise AutomixError(f"this PyAV/FFmpeg build has no '{spec.encoder}' encoder for {spec.name}") from None
    try:
        return _encode(av, spec, np.ascontiguousarray(samples, dtype=np.float32), sample_rate, kbps, layout)
    except av.FFmpegError as error:
        raise AutomixError(f"{spec.name} encoding at {kbps} kbit/s failed: {error}") from None


#: Samples handed to the encoder per frame: PyAV re-cuts them to the encoder's frame
#: size (and converts the sample format) in C, so Python touches a few dozen frames a
#: minute. The bytes do not depend on it (the encoder sees the same sample stream).
_FRAME_STEP = 1 << 16


def _encode(av, spec: CodecSpec, data: np.ndarray, sample_rate: int, kbps: int, layout: str) -> bytes:
    buffer = io.BytesIO()
    blocks = (data[:, start:start + _FRAME_STEP] for start in range(0, data.shape[1], _FRAME_STEP))
    _encode_into(av, spec, blocks, sample_rate, kbps, layout, buffer)
    return buffer.getvalue()


def _encode_into(av, spec: CodecSpec, blocks: Iterable[np.ndarray], sample_rate: int, kbps: int, layout: str,
                 target) -> int:
    """Encode a stream of float32 ``(channels, n)`` blocks (already at ``sample_rate``)
    into ``target`` (a path or a binary file object). Returns the frames encoded."""
    blocks = iter(blocks)
    with av.open(target, "w", format=spec.container, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(spec.encoder, rate=sample_rate, options={"flags": "+bitexact", **spec.options})
        stream.bit_rate = kbps * 1000
        stream.layout = layout
        stream.format = spec.sample_format

        def send(block: np.ndarray, pts: int) -> None:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, dtype=np.float32), format="fltp", layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = pts
            container.mux(stream.encode(frame))

        # The pre-roll mirrors the start: gather that much first (any block sizes).
        head, frames = [], 0
        for block in blocks:
            head.append(block)
            frames += block.shape[1]
            if frames >= spec.preroll_frames:
                break
        start = np.concatenate(head, axis=1) if head else np.zeros((1 if layout == "mono" else 2, 0), np.float32)
        preroll = _preroll(start, spec.preroll_frames)
        if preroll.shape[1]:  # negative timestamps: the muxer's edit list hides these samples
            send(preroll, -preroll.shape[1])
        at = 0
        if start.shape[1]:
            send(start, at)
            at = start.shape[1]
        for block in blocks:
            if block.shape[1]:
                send(block, at)
                at += block.shape[1]
        container.mux(stream.encode(None))
    return at


def encode_stream(blocks: Iterable[np.ndarray], sample_rate: int, channels: int, codec: str, target,
                  bitrate_kbps: int | None = None) -> int:
    """:func:`encode` for audio that does not fit in memory: float32 ``(channels, n)``
    blocks in, the encoded file written to ``target`` (a path or a binary file object).

    Audio at a rate the encoder does not take is resampled block by block (a soxr
    stream at the same very-high quality as :func:`automix.io.audio.resample`). For
    codecs that need no resampling (MP3, AAC at 44.1/48 kHz) the bytes equal
    :func:`encode`'s for the same audio; with resampling (Opus from 44.1 kHz) they are
    deterministic but not identical to the one-shot resampler's. Returns the frames
    encoded (at the codec's rate).
    """
    av = _av()
    spec = codec_spec(codec)
    kbps = _check_kbps(spec, spec.default_kbps if bitrate_kbps is None else bitrate_kbps)
    layout = _layout(channels, spec)
    if sample_rate <= 0:
        raise AutomixError(f"bad sample rate {sample_rate}")
    rate = codec_rate(spec, sample_rate)
    try:
        av.codec.Codec(spec.encoder, "w")
    except Exception:  # noqa: BLE001 - PyAV raises several types for a missing codec
        raise AutomixError(f"this PyAV/FFmpeg build has no '{spec.encoder}' encoder for {spec.name}") from None

    def checked() -> Iterable[np.ndarray]:
        resampler = None
        if rate != sample_rate:
            import soxr

            resampler = soxr.ResampleStream(sample_rate, rate, channels, dtype="float32", quality="VHQ")
        for block in blocks:
            block = np.asarray(block, dtype=np.float32)
            if block.ndim != 2 or block.shape[0] != channels:
                raise AutomixError(f"{spec.name} encoder: expected ({channels}, n) blocks, got {block.shape}")
            if not np.all(np.isfinite(block)):
                raise AutomixError("codec: the audio contains NaN or infinite samples")
            if resampler is not None:
                block = np.ascontiguousarray(resampler.resample_chunk(np.ascontiguousarray(block.T)).T)
            yield block
        if resampler is not None:
            yield np.ascontiguousarray(resampler.resample_chunk(np.zeros((0, channels), np.float32), last=True).T)

    try:
        return _encode_into(av, spec, checked(), rate, kbps, layout, target)
    except av.FFmpegError as error:
        raise AutomixError(f"{spec.name} encoding at {kbps} kbit/s failed: {error}") from None


def _preroll(data: np.ndarray, frames: int) -> np.ndarray:
    """The first ``frames`` samples mirrored in time under a raised-cosine fade-in: it
    joins the audio without a step (the mirror meets sample 0 at full level)."""
    frames = min(frames, data.shape[1])
    if frames == 0:
        return np.zeros((data.shape[0], 0), dtype=np.float32)
    fade_in = (0.5 - 0.5 * np.cos(np.pi * np.arange(frames) / frames)).astype(np.float32)
    return np.ascontiguousarray(data[:, frames - 1 :: -1] * fade_in)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a container in memory to float32 ``(channels, samples)`` and its rate.

    FFmpeg's demuxers and decoders drop the encoder delay the container declares (LAME
    header, MP4 edit list, Opus pre-skip), so sample 0 is the input's sample 0.
    """
    av = _av()
    try:
        return _decode(av, data)
    except (av.FFmpegError, IndexError) as error:
        raise AutomixError(f"cannot decode the encoded audio ({error or 'no audio stream'})") from None


def _decode(av, data: bytes) -> tuple[np.ndarray, int]:
    chunks = []
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            if not frame.format.is_planar:  # interleaved: (1, samples * channels)
                array = array.reshape(-1, channels).T
            chunks.append(array.astype(np.float32, copy=False))
    if not chunks:
        return np.zeros((channels, 0), dtype=np.float32), rate
    return np.concatenate(chunks, axis=1), rate


def _fit(decoded: np.ndarray, frames: int) -> np.ndarray:
    """Cut or zero-pad to ``frames`` (encoders pad the last frame)."""
    if decoded.shape[1] >= frames:
        return np.ascontiguousarray(decoded[:, :frames])
    return np.pad(decoded, ((0, 0), (0, frames - decoded.shape[1])))


def encode_decode_native(samples: np.ndarray, sample_rate: int, codec: str,
                         bitrate_kbps: int | None = None) -> tuple[np.ndarray, int]:
    """Round trip through ``codec``, returned at the rate its decoder outputs.

    Returns
    -------
    decoded : numpy.ndarray
        float32 ``(channels, samples)``, aligned with the input resampled to ``rate``
        and of the same length as that.
    rate : int
        The decoder's rate (48 kHz for Opus; the input rate for the others).
    """
    spec = codec_spec(codec)
    _check_audio(samples, sample_rate)
    rate = codec_rate(spec, sample_rate)
    at_rate = resample(np.asarray(samples, dtype=np.float32), sample_rate, rate)
    decoded, decoded_rate = decode(encode(at_rate, rate, spec.name, bitrate_kbps))
    if decoded_rate != rate:  # not seen with the codecs above; keep the promise anyway
        decoded = resample(decoded, decoded_rate, rate)
    return _fit(decoded, at_rate.shape[1]), rate


def encode_decode(samples: np.ndarray, sample_rate: int, codec: str, bitrate_kbps: int | None = None) -> np.ndarray:
    """What a listener's decoder plays back from ``samples`` encoded with ``codec``.

    Parameters
    ----------
    samples : numpy.ndarray
        float32 ``(channels, samples)``, mono or stereo.
    codec : str
        A name in :data:`CODECS`.
    bitrate_kbps : int, optional
        Defaults to the codec's ``default_kbps``.

    Returns
    -------
    numpy.ndarray
        float32 ``(channels, samples)`` at ``sample_rate``, same length as the input and
        aligned with it (encoder delay removed). For a codec that runs at another rate
        (Opus), the decoded audio is resampled back with soxr.
    """
    decoded, rate = encode_decode_native(samples, sample_rate, codec, bitrate_kbps)
    return _fit(resample(decoded, rate, sample_rate), samples.shape[1])


def _check_audio(samples: np.ndarray, sample_rate: int) -> None:
    if not isinstance(samples, np.ndarray) or samples.ndim != 2 or samples.shape[1] == 0:
        raise AutomixError("codec check needs (channels, samples) audio with at least one sample")
    if not np.all(np.isfinite(samples)):
        raise AutomixError("codec check: the audio contains NaN or infinite samples")
    if sample_rate <= 0:
        raise AutomixError(f"bad sample rate {sample_rate}")


def _codec_list(codecs: str | Iterable[str] | Iterable[tuple[str, int]],
                bitrate_kbps: int | Mapping[str, int] | None) -> tuple[tuple[str, int], ...]:
    """Normalise the ways callers name codecs into ``((name, kbps), ...)``."""
    if isinstance(codecs, str):
        pairs = parse_codecs(codecs)
    else:
        pairs = []
        for item in codecs:
            if isinstance(item, tuple):
                pairs.append((codec_spec(item[0]).name, _check_kbps(codec_spec(item[0]), int(item[1]))))
            else:
                pairs.append(parse_codecs(item)[0])
        pairs = tuple(pairs)
    if not pairs:
        raise AutomixError(f"no codec named (known: {', '.join(CODECS)})")
    if bitrate_kbps is None:
        return pairs
    if isinstance(bitrate_kbps, Mapping):
        return tuple((name, _check_kbps(CODECS[name], int(bitrate_kbps.get(name, kbps)))) for name, kbps in pairs)
    return tuple((name, _check_kbps(CODECS[name], int(bitrate_kbps))) for name, _ in pairs)


def codec_label(name: str, kbps: int) -> str:
    """Key used in results: ``"aac@256"``."""
    return f"{name}@{kbps}"


def decoded_true_peaks(samples: np.ndarray, sample_rate: int, codecs: str | Iterable[str] | Iterable[tuple[str, int]],
                       bitrate_kbps: int | Mapping[str, int] | None = None, *, robust: bool = False) -> dict[str, float]:
    """True peak (dBTP) of each codec's decoded version of ``samples``.

    Parameters
    ----------
    codecs : str or iterable
        ``"mp3,aac:128"``, ``["mp3", "aac"]`` or ``[("aac", 256)]``.
    bitrate_kbps : int or mapping, optional
        One bitrate for all codecs, or per codec name; else each codec's default.
    robust : bool
        Encode each codec also at its ``probe_offsets_db`` below the master and report
        the worst peak, referred back to the master's level (see :data:`CODECS`): what
        another build of an erratic encoder, or a slightly different master, may give.

    Returns
    -------
    dict
        ``{"mp3@320": -0.71, ...}`` in the order given. Each peak is measured at the
        rate the codec's decoder outputs (48 kHz for Opus), with
        :func:`automix.measure.loudness.true_peak_dbtp`.
    """
    _check_audio(samples, sample_rate)
    pairs = _codec_list(codecs, bitrate_kbps)
    return dict(zip([codec_label(*pair) for pair in pairs], _peaks(samples, sample_rate, pairs, robust)))


def _peaks(samples: np.ndarray, sample_rate: int, pairs: tuple[tuple[str, int], ...], robust: bool) -> list[float]:
    """Decoded true peak per (codec, kbps); the worst over the probe levels if robust.

    Each encode is independent, so they run on a thread pool (PyAV releases the GIL
    while FFmpeg encodes); each job writes only its own slot, so the result does not
    depend on the order they finish in.
    """
    jobs = [(index, name, kbps, offset_db) for index, (name, kbps) in enumerate(pairs)
            for offset_db in (CODECS[name].probe_offsets_db if robust else (0.0,))]

    def run(job: tuple[int, str, int, float]) -> float:
        _, name, kbps, offset_db = job
        scaled = samples if offset_db == 0.0 else samples * np.float32(10.0 ** (-offset_db / 20.0))
        decoded, rate = encode_decode_native(scaled, sample_rate, name, kbps)
        return true_peak_dbtp(decoded, rate) + offset_db

    with ThreadPoolExecutor(max_workers=min(len(jobs), loudness.THREADS)) as pool:  # AUTOMIX_THREADS
        results = list(pool.map(run, jobs))
    peaks = [-math.inf] * len(pairs)
    for (index, *_), peak in zip(jobs, results):
        peaks[index] = max(peaks[index], peak)
    return peaks


@dataclass(frozen=True)
class CodecSafeResult:
    """How much lower a master must sit for its decoded versions to hold the ceiling.

    Attributes
    ----------
    attenuation_db : float
        Extra attenuation (>= 0 dB) the master needs; 0 if every decoded peak already
        sits at or under the ceiling. Includes ``margin_db`` when positive.
    ceiling_dbtp : float
    margin_db : float
        The safety margin added on top of the measured excess (:data:`MARGIN_DB`).
    peaks_before_dbtp : dict
        Decoded true peak per ``"codec@kbps"`` of the master as given.
    peaks_after_dbtp : dict
        The same after ``attenuation_db`` of plain gain, measured by encoding again
        (equal to ``peaks_before_dbtp`` when nothing was needed).
    iterations : int
        Encode-and-measure passes over all codecs, including the first.
    verified : bool
        True if the peaks in ``peaks_after_dbtp`` are all at or under the ceiling. False
        if ``max_iterations`` passes ended with a peak still over it, or if the call
        was made with ``verify=False`` and an attenuation was needed (then
        ``peaks_after_dbtp`` is empty: the caller re-renders and measures again).
    robust : bool
        Whether peaks are the worst over each codec's probe levels.
    rates_hz : dict
        Rate each peak was measured at (48 kHz for Opus).
    """

    attenuation_db: float
    ceiling_dbtp: float
    margin_db: float
    peaks_before_dbtp: dict[str, float]
    peaks_after_dbtp: dict[str, float]
    iterations: int
    verified: bool
    robust: bool
    rates_hz: dict[str, int]

    @property
    def worst_before_dbtp(self) -> float:
        return max(self.peaks_before_dbtp.values())

    @property
    def worst_after_dbtp(self) -> float:
        return max(self.peaks_after_dbtp.values(), default=math.nan)

    def to_dict(self) -> dict:
        """Plain numbers for the JSON report."""
        return {
            "ceiling_dbtp": self.ceiling_dbtp,
            "attenuation_db": round(self.attenuation_db, 3),
            "margin_db": self.margin_db,
            "iterations": self.iterations,
            "verified": self.verified,
            "robust": self.robust,
            "decoded_true_peak_before_dbtp": {k: round(v, 3) for k, v in self.peaks_before_dbtp.items()},
            "decoded_true_peak_after_dbtp": {k: round(v, 3) for k, v in self.peaks_after_dbtp.items()},
            "measured_at_hz": dict(self.rates_hz),
        }


def codec_safe_gain_db(samples: np.ndarray, sample_rate: int, ceiling_dbtp: float,
                       codecs: str | Iterable[str] | Iterable[tuple[str, int]],
                       bitrate_kbps: int | Mapping[str, int] | None = None, *, robust: bool = True,
                       verify: bool = True, margin_db: float = MARGIN_DB,
                       max_iterations: int = MAX_ITERATIONS) -> CodecSafeResult:
    """Attenuation that brings every decoded true peak to or under ``ceiling_dbtp``.

    A lossy codec is close to linear in level for small changes (the decoded error
    scales with the signal), so the worst excess over the ceiling, plus ``margin_db``,
    is the first guess. It is then checked by encoding the attenuated master again
    with every codec; any remaining excess is added (with the margin again) and checked
    again, at most ``max_iterations`` passes in all.

    Parameters
    ----------
    samples : numpy.ndarray
        The final master, float32 ``(channels, samples)`` (quantise it first: that is
        what gets encoded).
    ceiling_dbtp : float
        The true-peak ceiling the decoded versions must hold.
    codecs, bitrate_kbps, robust
        As in :func:`decoded_true_peaks`. ``robust`` (the default here) guards against
        FFmpeg's AAC encoder, whose decoded peak jumps by tenths of a dB when the
        master moves by hundredths.
    verify : bool
        Encode the attenuated master again to check (and refine) the attenuation. A
        loop that re-renders the master through its limiter anyway should pass False
        and call again on each new render: the render is what gets checked, and each
        call then costs one encode per codec (and probe).
    margin_db : float
        Added to each correction (:data:`MARGIN_DB`).

    Returns
    -------
    CodecSafeResult
        The attenuation and the decoded peaks before and after. The mastering loop is
        meant to lower its limiter threshold by ``attenuation_db`` and render again
        (loudness then comes from more limiting), then call this again on the result.

    Raises
    ------
    AutomixError
        Unknown codec, PyAV or an encoder missing, or bad audio.
    """
    _check_audio(samples, sample_rate)
    pairs = _codec_list(codecs, bitrate_kbps)
    labels = [codec_label(name, kbps) for name, kbps in pairs]
    rates = {label: codec_rate(CODECS[name], sample_rate) for label, (name, _) in zip(labels, pairs)}
    before = dict(zip(labels, _peaks(samples, sample_rate, pairs, robust)))
    after = before
    attenuation_db = 0.0
    iterations = 1
    if not verify:
        excess_db = max(before.values()) - ceiling_dbtp
        return CodecSafeResult(
            attenuation_db=float(excess_db + margin_db) if excess_db > 0 else 0.0, ceiling_dbtp=float(ceiling_dbtp),
            margin_db=float(margin_db), peaks_before_dbtp=before, peaks_after_dbtp=before if excess_db <= 0 else {},
            iterations=1, verified=excess_db <= 0, robust=robust, rates_hz=rates)
    while max(after.values()) > ceiling_dbtp and iterations < max_iterations:
        attenuation_db += max(after.values()) - ceiling_dbtp + margin_db
        scaled = samples * np.float32(10.0 ** (-attenuation_db / 20.0))
        after = dict(zip(labels, _peaks(scaled, sample_rate, pairs, robust)))
        iterations += 1
    return CodecSafeResult(
        attenuation_db=float(attenuation_db),
        ceiling_dbtp=float(ceiling_dbtp),
        margin_db=float(margin_db),
        peaks_before_dbtp=before,
        peaks_after_dbtp=after,
        iterations=iterations,
        verified=max(after.values()) <= ceiling_dbtp,
        robust=robust,
        rates_hz=rates,
    )
