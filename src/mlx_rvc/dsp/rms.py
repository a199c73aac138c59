"""Loudness-envelope mixing between the input and the converted audio (pure numpy).

Everything here works block by block through a ``reader(lo, hi)`` that returns samples
``lo..hi`` of a signal (zeros outside it), so an output spooled to disk is mixed in bounded
memory with exactly the numbers of the in-memory path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

RMS_FLOOR = 1e-6  # keeps silent stretches of the output from dividing by zero
MIX_BLOCK = 1 << 20  # output samples per block of envelope computation
RMS_FRAMES_PER_BLOCK = 16  # frames per block of RMS computation (16 × 1 s × float64 ≈ 6 MB at 48 kHz)

Reader = Callable[[int, int], np.ndarray]


def array_reader(x: np.ndarray) -> Reader:
    """A reader over an in-memory signal, zero outside ``[0, len(x))``."""
    n = len(x)

    def read(lo: int, hi: int) -> np.ndarray:
        out = np.zeros(hi - lo, np.asarray(x).dtype)
        a, b = max(lo, 0), min(hi, n)
        if b > a:
            out[a - lo: b - lo] = x[a:b]
        return out

    return read


def frame_rms(audio: np.ndarray | Reader, *, frame_length: int, hop_length: int, n: int | None = None) -> np.ndarray:
    """RMS of centred frames (zero padding of frame_length//2 on both sides), one per hop.

    The framing of ``librosa.feature.rms`` (center=True, constant padding): frame k covers
    samples [k·hop − frame_length/2, k·hop + frame_length/2). ``audio`` is an array or a
    reader (then ``n`` gives the signal length); frames are computed a block at a time in
    float64.
    """
    if callable(audio):
        read, length = audio, n
    else:
        read, length = array_reader(audio), len(audio)
    pad = frame_length // 2
    n_frames = 1 + (length + 2 * pad - frame_length) // hop_length
    out = np.empty(n_frames)
    for k0 in range(0, n_frames, RMS_FRAMES_PER_BLOCK):
        k1 = min(k0 + RMS_FRAMES_PER_BLOCK, n_frames)
        lo = k0 * hop_length - pad
        seg = np.asarray(read(lo, (k1 - 1) * hop_length - pad + frame_length), np.float64)
        frames = np.lib.stride_tricks.sliding_window_view(seg, frame_length)[::hop_length]
        frames = frames * frames  # a contiguous copy: the same row sums as one whole-signal pass
        out[k0:k1] = np.sqrt(np.mean(frames, axis=1))
    return out


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


def mix_rms_blocks(source: Reader, source_len: int, source_sr: int, converted: Reader, converted_len: int,
                   converted_sr: int, rate: float) -> Iterator[np.ndarray]:
    """The mixed output of :func:`mix_rms`, yielded in consecutive blocks of ``MIX_BLOCK`` samples."""
    rms_src = frame_rms(source, frame_length=source_sr // 2 * 2, hop_length=source_sr // 2, n=source_len)
    rms_out = frame_rms(converted, frame_length=converted_sr // 2 * 2, hop_length=converted_sr // 2, n=converted_len)
    n = converted_len
    for lo in range(0, n, MIX_BLOCK):  # in blocks: the float64 envelopes of a long output are GBs
        hi = min(lo + MIX_BLOCK, n)
        env_src = linear_resize(rms_src, n, start=lo, stop=hi).astype(np.float32)
        env_out = np.maximum(linear_resize(rms_out, n, start=lo, stop=hi).astype(np.float32), np.float32(RMS_FLOOR))
        block = np.asarray(converted(lo, hi), np.float32)
        yield block * (np.power(env_src, np.float32(1 - rate)) * np.power(env_out, np.float32(rate - 1)))


def mix_rms(source: np.ndarray, source_sr: int, converted: np.ndarray, converted_sr: int,
            rate: float) -> np.ndarray:
    """Give ``converted`` the loudness envelope of ``source`` to the degree ``1 − rate``.

    Envelopes are RMS over half-second frames, stretched linearly to every output sample;
    the output is scaled by ``rms_src^(1−rate) · rms_out^(rate−1)``. ``rate = 1`` leaves the
    output unchanged, ``rate = 0`` copies the source's envelope entirely.
    """
    out = np.empty(len(converted), np.float32)
    lo = 0
    for block in mix_rms_blocks(array_reader(source), len(source), source_sr, array_reader(converted),
                                len(converted), converted_sr, rate):
        out[lo: lo + len(block)] = block
        lo += len(block)
    return out
