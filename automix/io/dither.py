"""Quantisation to the output's bit depth, with TPDF dither, block by block.

Integer depths get TPDF dither of +-1 LSB (the difference of two uniform variables),
which turns quantisation distortion into a constant, signal-independent noise floor.
The generator is seeded, and its values are drawn frame by frame (all channels of
frame ``n`` before frame ``n + 1``), so the noise added to a sample depends only on the
sample's position: any split of the signal into blocks gives the same bytes, and the
same input always gives the same output.
"""

from __future__ import annotations

import numpy as np

from automix.errors import AutomixError

#: Fixed seed for the dither generator, so the same input gives the same bytes.
DITHER_SEED = 0x5EED
#: ``--bit-depth`` value -> bits of an integer format (None: float, no dither).
INTEGER_BITS = {"16": 16, "24": 24, "32f": None}


class Dither:
    """Quantise ``(channels, n)`` float32 blocks to the grid of a PCM file.

    Parameters
    ----------
    bit_depth : {"16", "24", "32f"}
        ``32f`` passes samples through unchanged.
    channels : int
    seed : int

    Returns of :meth:`process` are float32 on the integer grid, scaled back to full
    scale 1.0, so the true peak of exactly what will be written can be measured first.
    """

    def __init__(self, bit_depth: str, channels: int, seed: int = DITHER_SEED) -> None:
        if bit_depth not in INTEGER_BITS:
            raise AutomixError(f"bit depth must be one of {', '.join(INTEGER_BITS)}, not {bit_depth!r}")
        self.bits = INTEGER_BITS[bit_depth]
        self.channels = channels
        self._rng = np.random.default_rng(seed)

    def process(self, block: np.ndarray) -> np.ndarray:
        if self.bits is None:
            return block.astype(np.float32, copy=False)
        scale = float(2 ** (self.bits - 1))
        frames = block.shape[1]
        # One draw of (frames, 2, channels): the stream of draws is in frame order, both
        # uniform variables of frame n before frame n + 1's. (Two draws per block, one per
        # variable, made the noise depend on where the blocks were cut.)
        draws = self._rng.random((frames, 2, self.channels), dtype=np.float32)
        codes = np.multiply(block, scale, dtype=np.float64)  # exact: scale is a power of 2
        for channel, row in enumerate(codes):
            # the dither (a float32 difference) channel by channel: a float32 row added to
            # a float64 one is a third of the time of a transposed (strided) one
            row += np.subtract(draws[:, 0, channel], draws[:, 1, channel])
        np.rint(codes, out=codes)
        np.clip(codes, -scale, scale - 1, out=codes)
        out = np.empty(codes.shape, dtype=np.float32)
        np.multiply(codes, 1.0 / scale, out=out, casting="same_kind")  # exact: integers over a power of 2
        return out
