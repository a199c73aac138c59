"""STFT magnitude and log-mel spectrogram, as RMVPE's front end computes them (pure numpy)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000  # Hz
N_FFT = 1024  # samples per analysis window (64 ms)
HOP = 160  # samples between frames (10 ms)
N_MELS = 128
FMIN = 30.0  # Hz
FMAX = 8000.0  # Hz
LOG_FLOOR = 1e-5  # magnitudes are clamped here before the log


def hz_to_mel_htk(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz_htk(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


SLANEY_HZ_PER_MEL = 200.0 / 3  # the Slaney scale is linear below 1 kHz ...
SLANEY_LOG_HZ = 1000.0  # ... and logarithmic above, 27 mels per factor 6.4
SLANEY_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel_slaney(f: np.ndarray | float) -> np.ndarray:
    f = np.asarray(f, np.float64)
    log_mel0 = SLANEY_LOG_HZ / SLANEY_HZ_PER_MEL
    above = log_mel0 + np.log(np.maximum(f, SLANEY_LOG_HZ) / SLANEY_LOG_HZ) / SLANEY_LOG_STEP
    return np.where(f >= SLANEY_LOG_HZ, above, f / SLANEY_HZ_PER_MEL)


def mel_to_hz_slaney(m: np.ndarray | float) -> np.ndarray:
    m = np.asarray(m, np.float64)
    log_mel0 = SLANEY_LOG_HZ / SLANEY_HZ_PER_MEL
    above = SLANEY_LOG_HZ * np.exp(SLANEY_LOG_STEP * (np.maximum(m, log_mel0) - log_mel0))
    return np.where(m >= log_mel0, above, m * SLANEY_HZ_PER_MEL)


@lru_cache(maxsize=8)
def mel_filterbank(*, sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN,
                   fmax: float = FMAX, htk: bool = True) -> np.ndarray:
    """Triangular mel filters with Slaney area normalisation, (n_mels, n_fft//2 + 1) float32.

    Band i rises from mel point i to i+1 and falls to i+2 (points evenly spaced in mels between
    fmin and fmax, on the HTK scale or, with ``htk=False``, Slaney's as librosa's default); each
    band is scaled by 2 / (its width in Hz) so bands of every width carry equal energy.
    """
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    to_mel, to_hz = (hz_to_mel_htk, mel_to_hz_htk) if htk else (hz_to_mel_slaney, mel_to_hz_slaney)
    points = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2))
    widths = np.diff(points)
    ramps = points[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (points[2:] - points[:-2]))[:, None]
    return weights.astype(np.float32)


def periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def stft_magnitude(audio: np.ndarray, *, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """|STFT| with a periodic Hann window, centred by reflect padding: (n_fft//2 + 1, frames) float32."""
    x = np.asarray(audio, np.float64).ravel()
    pad = n_fft // 2
    if x.size <= pad:
        raise ValueError(f"{x.size} samples are too few for centred reflect padding of {pad}")
    return stft_magnitude_frames(np.pad(x, pad, mode="reflect"), n_fft=n_fft, hop=hop)


def stft_magnitude_frames(xp: np.ndarray, *, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """|STFT| of an already padded signal: frame k covers xp[k·hop : k·hop + n_fft]."""
    n_frames = 1 + (xp.size - n_fft) // hop
    window = periodic_hann(n_fft)
    out = np.empty((n_fft // 2 + 1, n_frames), np.float32)
    step = 4096  # frames per block: bounds the float64 frame buffer (~32 MB)
    frames_view = np.lib.stride_tricks.sliding_window_view(xp, n_fft)[::hop]
    for s in range(0, n_frames, step):
        spec = np.fft.rfft(frames_view[s:s + step] * window, axis=-1)
        out[:, s:s + step] = np.abs(spec).T
    return out


def log_mel(audio: np.ndarray, *, block_seconds: float = 60.0) -> np.ndarray:
    """RMVPE's input: log(max(mel · |STFT|, 1e-5)), (128, frames) float32, frames = len // 160 + 1.

    Computed a minute of frames at a time: the full linear spectrogram of a long recording
    would be four times the size of the mel one.
    """
    x = np.asarray(audio).ravel()
    n = x.size
    pad = N_FFT // 2
    if n <= pad:
        raise ValueError(f"{n} samples are too few for centred reflect padding of {pad}")
    n_frames = 1 + (n + 2 * pad - N_FFT) // HOP
    step = max(1, int(block_seconds * SAMPLE_RATE / HOP))
    fb = mel_filterbank()
    out = np.empty((N_MELS, n_frames), np.float32)
    for s in range(0, n_frames, step):
        e = min(s + step, n_frames)
        # samples s·hop .. (e−1)·hop + n_fft of the reflect-padded signal, in float64, without
        # padding (or converting) the whole recording
        idx = np.abs(np.arange(s * HOP, (e - 1) * HOP + N_FFT) - pad)
        idx = np.where(idx >= n, 2 * (n - 1) - idx, idx)
        mag = stft_magnitude_frames(x[idx].astype(np.float64))
        out[:, s:e] = np.log(np.maximum(fb @ mag, np.float32(LOG_FLOOR)))
    return out
