"""``mlx-rvc demo``: runs the synthesizer with nothing downloaded.

It builds an untrained, randomly initialised voice with the full-size v2 48 kHz architecture,
feeds it content features and a sung melody made on the spot, and writes the result. The
voice is untrained, so the audio is a buzzy tone that follows the melody, not speech: the
demo shows that everything installs and runs, and how fast.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRAME_RATE = 100  # synthesizer frames per second
# a melody in semitones above A3 (220 Hz), each note 0.25 s, rests as None
MELODY = [3, 3, 10, 10, 12, 12, 10, None, 8, 8, 7, 7, 5, 5, 3, None]
NOTE_SECONDS = 0.25


@dataclass(frozen=True)
class DemoResult:
    path: Path
    seconds_of_audio: float
    timings: dict[str, float]  # stage -> seconds
    sample_rate: int


def melody_f0(seconds_per_note: float | None = None) -> np.ndarray:
    """f0 in Hz at 100 frames/s for :data:`MELODY`, with a 5.5 Hz vibrato; rests are 0 (unvoiced)."""
    seconds_per_note = NOTE_SECONDS if seconds_per_note is None else seconds_per_note
    frames = []
    for note in MELODY:
        n = int(round(seconds_per_note * FRAME_RATE))
        frames.append(np.zeros(n) if note is None else np.full(n, 220.0 * 2 ** (note / 12)))
    f0 = np.concatenate(frames)
    t = np.arange(f0.size) / FRAME_RATE
    return (f0 * 2 ** (0.3 * np.sin(2 * np.pi * 5.5 * t) / 12)).astype(np.float32)


def smooth_features(frames: int, dims: int, *, seed: int = 0) -> np.ndarray:
    """Slowly varying unit-variance stand-ins for content features, (frames, dims)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((frames + 20, dims))
    kernel = np.hanning(21)
    kernel /= np.sqrt((kernel**2).sum())
    return np.stack([np.convolve(x[:, d], kernel, mode="valid")[:frames] for d in range(dims)], 1).astype(np.float32)


def _coarse(f0: np.ndarray) -> np.ndarray:
    """Mel-scale coarse pitch 1..255 (50–1100 Hz), as the synthesizer's pitch embedding expects."""
    mel = 1127 * np.log1p(f0 / 700)
    lo, hi = 1127 * np.log1p(50 / 700), 1127 * np.log1p(1100 / 700)
    mel = np.where(mel > 0, (mel - lo) * 254 / (hi - lo) + 1, mel)
    return np.rint(np.clip(mel, 1, 255)).astype(np.int32)


def run_demo(out_dir: str | Path = "mlx-rvc-demo", *, seed: int = 0) -> DemoResult:
    import mlx.core as mx

    from .audio import write_audio
    from .models import synthesizer as synth

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    cfg = synth.standard_config("v2", 48000, f0=True)
    model = synth.build(cfg, synth.random_weights(cfg, seed=seed))
    timings["build voice"] = time.perf_counter() - t0

    f0 = melody_f0()
    frames = f0.size
    phone = smooth_features(frames, cfg.phone_channels, seed=seed)
    t0 = time.perf_counter()
    audio = model.infer(mx.array(phone[None]), mx.array([frames]), mx.array([0]),
                        pitch=mx.array(_coarse(f0)[None]), pitchf=f0[None], seed=seed)
    mx.eval(audio)
    timings["synthesize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    path = write_audio(Path(out_dir) / "demo.wav", np.asarray(audio[0]), cfg.sample_rate)
    timings["write"] = time.perf_counter() - t0
    return DemoResult(path, frames / FRAME_RATE, timings, cfg.sample_rate)
