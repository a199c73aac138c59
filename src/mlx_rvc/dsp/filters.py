"""Input conditioning filters (pure scipy)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

HIGHPASS_HZ = 48  # removes rumble and DC before pitch and content analysis
HIGHPASS_ORDER = 5
SAMPLE_RATE = 16000  # Hz


@lru_cache(maxsize=None)
def _butter_highpass() -> tuple[np.ndarray, np.ndarray]:
    return signal.butter(N=HIGHPASS_ORDER, Wn=HIGHPASS_HZ, btype="high", fs=SAMPLE_RATE)


def highpass(audio: np.ndarray) -> np.ndarray:
    """Zero-phase (forward-backward) 5th-order Butterworth high-pass at 48 Hz; float64 out.

    Matches the reference's ``scipy.signal.filtfilt`` call, default padding included, so it
    needs more than 18 samples of input.
    """
    b, a = _butter_highpass()
    return signal.filtfilt(b, a, np.asarray(audio))


FILTER_BLOCK = 1 << 18  # samples per block of the blocked forward-backward pass


def highpass_padded(audio: np.ndarray, pad: int) -> np.ndarray:
    """:func:`highpass` followed by ``pad`` samples of reflect padding per side, as float32,
    in bounded extra memory (one float64 copy of the signal, no temporaries of its size).

    The same arithmetic as ``filtfilt``'s default method (odd extension by 3·max(len(a), len(b))
    samples in the input's dtype, steady-state initial conditions scaled by the first sample of
    each pass), run block by block with the filter state carried across blocks, which
    reproduces the one-pass result exactly.
    """
    b, a = _butter_highpass()
    x = np.asarray(audio)
    n = len(x)
    edge = 3 * max(len(a), len(b))
    if n <= edge:
        raise ValueError(f"the high-pass filter needs more than {edge} samples, got {n}")
    if pad >= n:  # shorter than the padding: numpy reflects repeatedly; small, so in one pass
        return np.pad(highpass(x), (pad, pad), mode="reflect").astype(np.float32)
    left = 2 * x[0] - x[edge:0:-1]  # odd extension, computed in the input's dtype as filtfilt does
    right = 2 * x[-1] - x[-2:-edge - 2:-1]
    zi = signal.lfilter_zi(b, a)
    forward = np.empty(n + 2 * edge)
    state = zi * left[0]
    pos = 0
    for part in (left, *(x[lo:lo + FILTER_BLOCK] for lo in range(0, n, FILTER_BLOCK)), right):
        forward[pos:pos + len(part)], state = signal.lfilter(b, a, part, zi=state)
        pos += len(part)
    out = np.empty(n + 2 * pad, np.float32)
    state = zi * forward[-1]
    stop = len(forward)
    while stop > edge:  # backwards; the left extension's outputs are never kept
        lo = max(stop - FILTER_BLOCK, edge)
        block, state = signal.lfilter(b, a, forward[lo:stop][::-1], zi=state)
        # forward index i holds signal sample i − edge, stored at pad + i − edge
        keep_hi = min(stop, edge + n)
        if keep_hi > lo:
            out[pad + lo - edge: pad + keep_hi - edge] = block[stop - keep_hi:][::-1]
        stop = lo
    del forward
    out[:pad] = out[2 * pad: pad: -1]  # reflect: sample −k mirrors sample k
    out[pad + n:] = out[pad + n - 2: n - 2: -1]
    return out
