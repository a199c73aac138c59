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
