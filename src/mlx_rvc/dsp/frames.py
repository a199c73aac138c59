"""Overlapping frames of a signal as a strided view (no copy)."""

from __future__ import annotations

import numpy as np


def strided_frames(y: np.ndarray, kernel: int, stride: int, count: int) -> np.ndarray:
    """Rows y[s·t : s·t + k] flattened, t < count: a strided view of a contiguous (T, C) array.

    Tap-major, as the conv weight reshaped (out, k·in). Overlapping windows (k > s) are
    copied by the matmul that reads them; k == s is a plain reshape.
    """
    c = y.shape[1]
    if kernel == stride:
        return y[: count * stride].reshape(count, kernel * c)
    return np.lib.stride_tricks.as_strided(y, shape=(count, kernel * c), strides=(stride * c * 4, 4), writeable=False)
