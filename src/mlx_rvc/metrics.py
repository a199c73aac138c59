"""Comparison metrics between two arrays or two waveforms (numpy only).

The waveform metrics follow the reference harness: spectral correlation is the Pearson
correlation over all bins of |STFT| (n_fft 2048, hop 512, periodic Hann, centred with reflect
padding), both signals cut to the shorter length; int16 audio is scaled by 1/32768 first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SPEC_N_FFT = 2048  # samples
SPEC_HOP = 512  # samples


@dataclass(frozen=True)
class ArrayDiff:
    """How far an array is from its reference."""

    max_abs: float  # max |a - ref|
    rms: float  # RMS of (a - ref)
    ref_rms: float  # RMS of ref, the scale the errors compare to
    rel_rms: float  # rms / ref_rms
    corr: float  # Pearson correlation (1.0 when both are constant and equal)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    if den == 0.0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float((a * b).sum() / den)


def array_diff(a: np.ndarray, ref: np.ndarray) -> ArrayDiff:
    """Compare ``a`` with ``ref`` (same shape after squeezing)."""
    a = np.asarray(a, np.float64)
    ref = np.asarray(ref, np.float64)
    if a.squeeze().shape != ref.squeeze().shape:
        raise ValueError(f"shape mismatch: {a.shape} vs reference {ref.shape}")
    a, ref = a.reshape(ref.shape) if a.size == ref.size else a, ref
    d = a - ref
    rms = float(np.sqrt(np.mean(d * d))) if d.size else 0.0
    ref_rms = float(np.sqrt(np.mean(ref * ref))) if ref.size else 0.0
    return ArrayDiff(
        max_abs=float(np.abs(d).max()) if d.size else 0.0,
        rms=rms,
        ref_rms=ref_rms,
        rel_rms=rms / ref_rms if ref_rms > 0 else (0.0 if rms == 0 else float("inf")),
        corr=pearson(a, ref),
    )


def to_float_audio(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.int16:
        return x.astype(np.float64) / 32768.0
    return x.astype(np.float64).ravel()


def stft_magnitude(x: np.ndarray, *, n_fft: int = SPEC_N_FFT, hop: int = SPEC_HOP) -> np.ndarray:
    """|STFT| with a periodic Hann window, centred with reflect padding; shape (frames, n_fft//2+1).

    Signals too short to reflect are zero-padded instead, so any length can be compared.
    """
    from .dsp.mel import stft_magnitude_frames

    x = np.asarray(x, np.float64).ravel()
    pad = n_fft // 2
    xp = np.pad(x, pad, mode="reflect" if x.size > pad else "constant")
    if xp.size < n_fft:
        xp = np.pad(xp, (0, n_fft - xp.size))
    return stft_magnitude_frames(xp, n_fft=n_fft, hop=hop).T


@dataclass(frozen=True)
class AudioDiff:
    """How close a waveform is to a reference waveform."""

    spec_corr: float  # Pearson over all |STFT| bins
    wave_corr: float  # Pearson of the samples
    rms_ratio: float  # RMS(a) / RMS(ref)
    max_abs: float
    rms_diff: float
    snr_db: float  # 10·log10(‖ref‖² / ‖a − ref‖²)
    length: int  # samples compared (the shorter of the two)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def audio_diff(a: np.ndarray, ref: np.ndarray) -> AudioDiff:
    """Compare two mono waveforms (float, or int16 scaled by 1/32768), cut to the shorter."""
    a = to_float_audio(a)
    ref = to_float_audio(ref)
    n = min(a.size, ref.size)
    a, ref = a[:n], ref[:n]
    d = a - ref
    p_ref = float(np.sum(ref * ref))
    p_d = float(np.sum(d * d))
    ref_rms = np.sqrt(p_ref / n) if n else 0.0
    return AudioDiff(
        spec_corr=pearson(stft_magnitude(a), stft_magnitude(ref)) if n else 1.0,
        wave_corr=pearson(a, ref),
        rms_ratio=float(np.sqrt(np.mean(a * a)) / ref_rms) if ref_rms > 0 else float("nan"),
        max_abs=float(np.abs(d).max()) if n else 0.0,
        rms_diff=float(np.sqrt(p_d / n)) if n else 0.0,
        snr_db=float(10 * np.log10(p_ref / p_d)) if p_d > 0 else float("inf"),
        length=n,
    )
