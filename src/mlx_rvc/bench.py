"""Benchmarks (``mlx-rvc bench``): wall-clock seconds with warm-up, ``mx.eval`` every run, peak memory.

Benchmarks are measurements, never tests: nothing here asserts a speed.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class BenchResult:
    name: str
    seconds: list[float]  # one entry per timed run (after warm-up)
    audio_seconds: float | None = None  # seconds of audio processed per run
    peak_mlx_bytes: int | None = None  # MLX's own peak allocation during the runs
    peak_rss_bytes: int | None = None  # the process's peak resident set so far
    extra: dict = field(default_factory=dict)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def realtime_factor(self) -> float | None:
        """Seconds of compute per second of audio (below 1: faster than real time)."""
        return self.best / self.audio_seconds if self.audio_seconds else None

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(best=self.best, realtime_factor=self.realtime_factor)
        return d


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def time_matmul(size: int = 2048, repeats: int = 3) -> float:
    """Best seconds for one float32 (size x size) @ (size x size) in MLX, in this process."""
    import mlx.core as mx

    a = mx.random.normal((size, size))
    b = mx.random.normal((size, size))
    mx.eval(a, b)
    mx.eval(a @ b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mx.eval(a @ b)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_blas(size: int = 2048) -> BenchResult:
    """The active BLAS against MLX's bundled reference BLAS (timed in a child process)."""
    from .backend import BLAS

    fast = time_matmul(size)
    env = {**os.environ, "MLX_RVC_BLAS": "none"}
    code = f"import mlx_rvc.bench as b; print(b.time_matmul({size}, repeats=1))"
    slow = None
    if BLAS.name != "reference":
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
        if out.returncode == 0:
            slow = float(out.stdout.strip().splitlines()[-1])
    flops = 2 * size**3
    return BenchResult(
        f"matmul {size}x{size} float32", [fast],
        extra={"blas": BLAS.name, "gflops": flops / fast / 1e9, "reference_blas_seconds": slow,
               "speedup": (slow / fast) if slow else None},
    )


def bench_synth(*, version: str = "v2", sample_rate: int = 48000, f0: bool = True, seconds: float = 30.0,
                repeats: int = 2, seed: int = 0) -> BenchResult:
    """Synthesizer (``net_g.infer`` equivalent) on a full-size random voice, ``seconds`` of audio."""
    import mlx.core as mx

    from .models import synthesizer as synth

    cfg = synth.standard_config(version, sample_rate, f0)
    model = synth.build(cfg, synth.random_weights(cfg, seed=seed))
    frames = int(round(seconds * 100))
    rng = np.random.default_rng(seed)
    phone = mx.array(rng.standard_normal((1, frames, cfg.phone_channels)).astype(np.float32))
    pitchf = (180 + 40 * np.sin(np.arange(frames) / 50)).astype(np.float32)[None]
    pitch = mx.array(np.full((1, frames), 100, np.int32))
    args = (phone, mx.array([frames]), mx.array([0]))
    kwargs = {"pitch": pitch, "pitchf": pitchf} if f0 else {}

    def once() -> float:
        t0 = time.perf_counter()
        mx.eval(model.infer(*args, **kwargs, seed=seed))
        return time.perf_counter() - t0

    warm = once()  # warm-up (allocations, kernel set-up)
    mx.reset_peak_memory()
    times = [once() for _ in range(repeats)]
    return BenchResult(
        f"synthesizer {version} {sample_rate // 1000}k {'f0' if f0 else 'nof0'}", times, seconds,
        peak_mlx_bytes=mx.get_peak_memory(), peak_rss_bytes=_peak_rss(), extra={"warmup_seconds": warm},
    )


def to_json(results: list[BenchResult]) -> str:
    from .backend import describe

    return json.dumps({"system": describe(), "results": [r.as_dict() for r in results]}, indent=2)
