"""The dither's noise depends only on the sample's position, never on how the stream was cut."""

import numpy as np
import pytest

from automix.io.dither import Dither


@pytest.mark.parametrize("bit_depth", ["16", "24"])
def test_any_split_into_blocks_gives_the_same_bytes(bit_depth):
    x = (np.random.default_rng(1).standard_normal((2, 50_000)) * 0.1).astype(np.float32)
    whole = Dither(bit_depth, 2).process(x)
    dither = Dither(bit_depth, 2)
    cuts = [0, 1, 1000, 1003, 34_333, 50_000]
    split = np.concatenate([dither.process(x[:, a:b]) for a, b in zip(cuts[:-1], cuts[1:])], axis=1)
    assert np.array_equal(whole, split)


def test_tpdf_noise_is_triangular_over_two_lsb():
    # a constant exactly on code 100: 100 + t, t triangular on (-1, 1) LSB, rounds to 99 for
    # t < -1/2 (probability 1/8), to 101 for t > 1/2 (1/8), else to 100 (3/4)
    lsb = 1 / 2**15
    x = np.full((1, 200_000), 100 * lsb, dtype=np.float32)
    codes = np.rint(Dither("16", 1).process(x) / lsb).astype(int) - 100
    values, counts = np.unique(codes, return_counts=True)
    shares = dict(zip(values.tolist(), (counts / codes.size).tolist()))
    assert set(shares) == {-1, 0, 1}
    assert shares[-1] == pytest.approx(1 / 8, abs=0.004)
    assert shares[1] == pytest.approx(1 / 8, abs=0.004)
    assert shares[0] == pytest.approx(3 / 4, abs=0.004)
