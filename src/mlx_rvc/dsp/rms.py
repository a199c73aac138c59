"""Loudness-envelope mixing between the input and the converted audio (pure numpy)."""

from __future__ import annotations

import numpy as np

RMS_FLOOR = 1e-6  # keeps silent stretches of the output from dividing by zero
MIX_BLOCK = 1 << 20  # output samples per block of envelope computation


def frame_rms(audio: np.ndarray, *, frame_length: int, hop_length: int) -> np.ndarray:
    """RMS of centred frames (zero padding of frame_length//2 on both sides), one per hop.

    The framing of ``librosa.feature.rms`` (center=True, constant padding): frame k covers
    samples [k·hop − frame_length/2, k·hop + frame_length/2).
    """
    x = np.asarray(audio, np.float64)
    pad = frame_length // 2
    xp = np.pad(x, (pad, pad))
    n_frames = 1 + (len(xp) - frame_length) // hop_length
    idx = np.arange(n_frames)[:, None] * hop_length + np.arange(frame_length)[None, :]
    if n_frames * frame_length > 50_000_000:  # long input: stream the frames to bound memory
        out = np.empty(n_frames)
        for s in range(0, n_frames, 256):
            seg = xp[idx[s:s + 256]]
            out[s:s + 256] = np.sqrt(np.mean(seg * seg, axis=1))
        return out
    frames = xp[idx]
    return np.sqrt(np.mean(frames * frames, axis=1))


def linear_resize(x: np.ndarray, size: int, *, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Points ``start:stop`` of a curve resampled to ``size`` points like torch
    ``interpolate(mode='linear')`` (half-pixel centres)."""
    n = len(x)
    stop = size if stop is None else stop
    scale = n / size
    src = np.maximum((np.arange(start, stop) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    lam = src - i0
    return (1 - lam) * x[i0] + lam * x[i1]


def mix_rms(source: np.ndarray, source_sr: int, converted: np.ndarray, converted_sr: int,
            rate: float) -> np.ndarray:
    """Give ``converted`` the loudness envelope of ``source`` to the degree ``1 − rate``.

    Envelopes are RMS over half-second frames, stretched linearly to every output sample;
    the output is scaled by ``rms_src^(1−rate) · rms_out^(rate−1)``. ``rate = 1`` leaves the
    output unchanged, ``rate = 0`` copies the source's envelope entirely.
    """
    rms_src = frame_rms(source, frame_length=source_sr // 2 * 2, hop_length=source_sr // 2)
    rms_out = frame_rms(converted, frame_length=converted_sr // 2 * 2, hop_length=converted_sr // 2)
    n = len(converted)
    out = np.asarray(converted, np.float32).copy()
    for lo in range(0, n, MIX_BLOCK):  # in blocks: the float64 envelopes of a long output are GBs
        hi = min(lo + MIX_BLOCK, n)
        env_src = linear_resize(rms_src, n, start=lo, stop=hi).astype(np.float32)
        env_out = np.maximum(linear_resize(rms_out, n, start=lo, stop=hi).astype(np.float32), np.float32(RMS_FLOOR))
        out[lo:hi] *= np.power(env_src, np.float32(1 - rate)) * np.power(env_out, np.float32(rate - 1))
    return out
