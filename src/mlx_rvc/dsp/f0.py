"""f0 utilities shared by every pitch tracker (pure numpy): coarse pitch, shifts, unvoiced frames."""

from __future__ import annotations

import numpy as np

F0_MIN = 50.0  # Hz, lowest pitch the coarse scale and the trackers consider
F0_MAX = 1100.0  # Hz, highest
COARSE_BINS = 255  # coarse pitch takes values 1..255 (1 also means unvoiced)


def hz_to_mel(f0: np.ndarray) -> np.ndarray:
    """The mel scale the coarse pitch uses: 1127·ln(1 + f/700)."""
    return 1127.0 * np.log(1.0 + np.asarray(f0, np.float64) / 700.0)


def coarse_pitch(f0: np.ndarray) -> np.ndarray:
    """f0 in Hz -> the synthesizer's pitch-embedding index 1..255, int32.

    Linear in mel between F0_MIN (→ 1) and F0_MAX (→ 255), rounded half to even; unvoiced
    (0 Hz) and anything below F0_MIN map to 1, above F0_MAX to 255.
    """
    mel = hz_to_mel(f0)
    lo, hi = hz_to_mel(F0_MIN), hz_to_mel(F0_MAX)
    mel = np.where(mel > 0, (mel - lo) * (COARSE_BINS - 1) / (hi - lo) + 1, mel)
    mel = np.clip(mel, 1, COARSE_BINS)
    return np.rint(mel).astype(np.int32)


def shift_semitones(f0: np.ndarray, semitones: float) -> np.ndarray:
    """Transpose by ``semitones`` (unvoiced 0 Hz stays 0)."""
    return np.asarray(f0) * 2 ** (semitones / 12)


def fill_unvoiced(f0: np.ndarray) -> np.ndarray:
    """Replace unvoiced (0 Hz) frames by linear interpolation between voiced ones; edges hold.

    With no voiced frame at all the contour stays 0 (nothing to interpolate from).
    """
    f0 = np.array(f0, copy=True)
    voiced = f0 != 0
    if voiced.any() and not voiced.all():
        idx = np.arange(len(f0))
        f0[~voiced] = np.interp(idx[~voiced], idx[voiced], f0[voiced])
    return f0


CENTS_BASE = 1997.3794084376191  # cents of RMVPE's first salience bin (re 10 Hz)
CENTS_STEP = 20.0  # cents between salience bins


def salience_to_f0(salience: np.ndarray, *, threshold: float = 0.03) -> np.ndarray:
    """RMVPE decoding: per frame, the salience-weighted mean cents over the 9 bins around the
    peak; f0 = 10·2^(cents/1200) Hz, or 0 where the peak salience is ≤ threshold. (T, bins) -> (T,)."""
    sal = np.asarray(salience, np.float32)
    t, bins = sal.shape
    cents = np.pad(CENTS_STEP * np.arange(bins) + CENTS_BASE, (4, 4))
    padded = np.pad(sal, ((0, 0), (4, 4)))
    centre = np.argmax(sal, axis=1) + 4
    idx = centre[:, None] + np.arange(-4, 5)[None, :]
    window = np.take_along_axis(padded, idx, axis=1)
    weighted = np.sum(window * cents[idx], axis=1) / np.sum(window, axis=1)
    weighted[np.max(padded, axis=1) <= threshold] = 0
    f0 = 10 * 2 ** (weighted / 1200)
    f0[f0 == 10] = 0
    return f0
