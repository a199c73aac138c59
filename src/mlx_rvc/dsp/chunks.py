"""Where the reference pipeline cuts long audio into chunks, and the chunks themselves (pure).

Long inputs are cut near every ``x_center`` seconds, at the quietest 10 ms window within
``±x_query`` seconds of that point, so cuts fall in pauses. The whole signal is first reflect-
padded by ``x_pad`` seconds on both sides; each chunk then carries ``x_pad`` seconds of real
context on each side, which the synthesizer's output loses again when the chunks are stitched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000  # Hz, the content encoder's rate
WINDOW = 160  # samples per 10 ms frame at 16 kHz


@dataclass(frozen=True)
class ChunkConfig:
    """The reference's chunking settings, in seconds (its CPU defaults)."""

    x_pad: int = 1  # reflect padding around the whole signal, and context kept around each chunk
    x_query: int = 6  # search radius for a quiet cut point
    x_center: int = 38  # nominal distance between cuts
    x_max: int = 41  # inputs (padded by half a window) up to this long are not cut

    def __post_init__(self) -> None:
        if not (0 < self.x_query < self.x_center < self.x_max) or self.x_pad < 1:
            raise ValueError(f"invalid chunking {self}: need x_pad ≥ 1 and 0 < x_query < x_center < x_max")


@dataclass(frozen=True)
class Chunk:
    start: int  # first sample, in the padded signal
    stop: int  # one past the last sample, in the padded signal


def _window_energy(audio: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Sum of |x| over the 160-sample window centred on each sample in [lo, hi).

    Added one shift at a time in float64, in the reference's order, so ties between equally
    quiet windows resolve identically.
    """
    half = WINDOW // 2
    padded = np.pad(np.asarray(audio, np.float64), (half, half), mode="reflect")
    out = np.zeros(hi - lo)
    for i in range(WINDOW):
        out += np.abs(padded[lo + i: hi + i])
    return out


def cut_points(audio: np.ndarray, cfg: ChunkConfig = ChunkConfig()) -> list[int]:
    """Cut positions (samples of the unpadded 16 kHz signal, not yet frame-aligned)."""
    n = len(audio)
    t_query, t_center = SAMPLE_RATE * cfg.x_query, SAMPLE_RATE * cfg.x_center
    if n + WINDOW <= SAMPLE_RATE * cfg.x_max:
        return []
    cuts = []
    for t in range(t_center, n, t_center):
        lo, hi = max(t - t_query, 0), min(t + t_query, n)
        energy = _window_energy(audio, lo, hi)
        cuts.append(lo + int(np.argmin(energy)))
    return cuts


def plan_chunks(audio: np.ndarray, cfg: ChunkConfig = ChunkConfig()) -> list[Chunk]:
    """Chunks of the reflect-padded signal, each with ``x_pad`` seconds of context per side.

    Chunk i runs from the previous frame-aligned cut to this cut + 2·x_pad s + one window; the
    last chunk runs to the end of the padded signal.
    """
    t_pad = SAMPLE_RATE * cfg.x_pad
    padded_len = len(audio) + 2 * t_pad
    chunks, start = [], 0
    for t in cut_points(audio, cfg):
        t = t // WINDOW * WINDOW
        chunks.append(Chunk(start, t + 2 * t_pad + WINDOW))
        start = t
    chunks.append(Chunk(start, padded_len))
    return chunks
