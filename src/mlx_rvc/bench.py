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


def system_line() -> str:
    """Device, form, precision and BLAS in one line, for the head of a human-readable report."""
    from .backend import describe

    d = describe()
    memory = f", {d['device_memory']}" if d["device_memory"] != "-" else ""
    return (f"device {d['device']} ({d['device_name']}{memory}), form {d['form']}, "
            f"precision {d['precision'].split(' ')[0]}, BLAS {d['blas']}, mlx {d['mlx']}")


def to_json(results: list[BenchResult]) -> str:
    from .backend import describe

    return json.dumps({"system": describe(), "results": [r.as_dict() for r in results]}, indent=2)


# ----------------------------------------------------------------------------- the whole pipeline

def build_random_library(root, *, seed: int = 0) -> dict[str, str]:
    """Full-size, untrained models (v2 48 kHz voice with a 768-d index, HuBERT-base, RMVPE) as
    model directories under ``root``, so anyone can benchmark without weights."""
    from pathlib import Path

    from . import artifact
    from .importer import INDEX_NAME
    from .models import hubert, rmvpe, synthesizer

    root = Path(root)
    vcfg = synthesizer.standard_config("v2", 48000, f0=True)
    voice = root / "voice"
    index_file = root / "voice.index.tmp"
    _random_index(index_file, dim=768, seed=seed)
    artifact.write_model_dir(voice, config={"model_type": "rvc_voice", **vcfg.to_dict()},
                             weights=synthesizer.random_weights(vcfg, seed=seed),
                             extra_files={INDEX_NAME: index_file})
    index_file.unlink()
    artifact.write_model_dir(root / "encoder", config={"model_type": "hubert", **hubert.BASE.to_dict()},
                             weights=hubert.random_weights(hubert.BASE, seed=seed + 1))
    artifact.write_model_dir(root / "rmvpe", config={"model_type": "rmvpe", **rmvpe.RELEASED.to_dict()},
                             weights=rmvpe.random_weights(rmvpe.RELEASED, seed=seed + 2))
    return {"voice": str(voice), "encoder": str(root / "encoder"), "pitch_model": str(root / "rmvpe")}


def _random_index(path, *, dim: int, seed: int, n: int = 4000) -> None:
    """An IVF-Flat index like RVC training writes, over random vectors."""
    import faiss

    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    nlist = max(1, min(int(16 * np.sqrt(n)), n // 39))
    index = faiss.index_factory(dim, f"IVF{nlist},Flat")
    index.train(vectors)
    index.add(vectors)
    faiss.write_index(index, str(path))


def speech_like(seconds: float, *, seed: int = 0) -> np.ndarray:
    """``seconds`` of 16 kHz speech: the bundled clip repeated, with a −60 dB noise floor."""
    from .audio import load_audio, resample
    from .demo import ASSET

    clip, sr = load_audio(ASSET)
    clip = resample(clip, orig_sr=sr, target_sr=16000)
    n = int(seconds * 16000)
    x = np.tile(clip, n // len(clip) + 1)[:n]
    return (x + np.random.default_rng(seed).standard_normal(n).astype(np.float32) * 1e-3).astype(np.float32)


def _pipeline_worker(spec: dict) -> dict:
    """One length in a fresh process: cold (load + first run) and warm runs, per stage.

    Each run is what ``mlx-rvc convert`` does: decode a 16 kHz wav file, convert, write a
    16-bit wav (through :meth:`VoiceConverter.convert_file`, which streams the output).
    """
    import tempfile
    from pathlib import Path

    import mlx.core as mx
    import soundfile as sf

    from .options import ConversionOptions
    from .pipeline import VoiceConverter

    options = ConversionOptions(f0_method=spec["f0_method"], index_rate=spec["index_rate"])
    with tempfile.TemporaryDirectory(prefix="mlx-rvc-bench-") as tmp:
        source, target = Path(tmp) / "input.wav", Path(tmp) / "output.wav"
        if spec.get("audio"):
            source = Path(spec["audio"])
        else:
            sf.write(source, speech_like(spec["seconds"]), 16000, subtype="FLOAT")
        t0 = time.perf_counter()
        conv = VoiceConverter(spec["voice"], encoder=spec["encoder"], pitch_model=spec["pitch_model"])
        cold_result = conv.convert_file(source, target, options)
        cold = time.perf_counter() - t0
        warm, stages = [], {}
        for _ in range(spec["repeats"]):
            t0 = time.perf_counter()
            result = conv.convert_file(source, target, options)
            warm.append(time.perf_counter() - t0)
            stages = result.timings
    return {"seconds": cold_result.input_seconds, "cold": cold, "warm": warm, "stages": stages,
            "cold_stages": cold_result.timings, "peak_mlx_bytes": mx.get_peak_memory(),
            "peak_rss_bytes": _peak_rss()}


def bench_pipeline(lengths: list[float], *, voice=None, encoder=None, pitch_model=None, f0_method: str = "rmvpe",
                   index_rate: float = 0.75, repeats: int = 1, audio=None) -> list[BenchResult]:
    """The whole conversion at several lengths, each in a fresh process (clean peak memory).

    ``repeats`` warm runs follow the cold one (0: the cold run only, for long inputs). With
    ``audio`` (a file), that file is converted instead of generated speech, once.

    Without models, full-size untrained ones are built (v2 48k + index, HuBERT-base, RMVPE).
    """
    import tempfile

    tmp = None
    if voice is None:
        tmp = tempfile.TemporaryDirectory(prefix="mlx-rvc-bench-")
        models = build_random_library(tmp.name)
    else:
        models = {"voice": str(voice), "encoder": encoder and str(encoder), "pitch_model": pitch_model and str(pitch_model)}
    if audio is not None:
        lengths = [None]  # the worker reports the file's length
    results = []
    try:
        for seconds in lengths:
            spec = {**models, "seconds": seconds, "f0_method": f0_method, "index_rate": index_rate, "repeats": repeats,
                    "audio": str(audio) if audio is not None else None}
            code = ("import json,sys,mlx_rvc.bench as b;"
                    "print('RESULT'+json.dumps(b._pipeline_worker(json.loads(sys.argv[1]))))")
            out = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True)
            line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT")), None)
            if out.returncode != 0 or line is None:
                err = out.stderr.strip().splitlines()
                what = f"{seconds:g} s" if seconds is not None else str(audio)
                raise RuntimeError(f"benchmark of {what} failed: {err[-1] if err else out.returncode}")
            r = json.loads(line[len("RESULT"):])
            results.append(BenchResult(
                f"pipeline {r['seconds']:g} s", r["warm"] or [r["cold"]], r["seconds"], peak_mlx_bytes=r["peak_mlx_bytes"],
                peak_rss_bytes=r["peak_rss_bytes"],
                extra={"cold_seconds": r["cold"], "stages": r["stages"], "cold_stages": r["cold_stages"]}))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return results


# ----------------------------------------------------------------------------- precision modes

def _precision_worker(spec: dict) -> dict:
    """One precision in a fresh process (MLX reads its TF32 switch once): warm time and the audio."""
    from pathlib import Path

    from .options import ConversionOptions
    from .pipeline import VoiceConverter

    audio = speech_like(spec["seconds"])
    conv = VoiceConverter(spec["voice"], encoder=spec["encoder"], pitch_model=spec["pitch_model"], keep_models=True)
    options = ConversionOptions(precision=spec["precision"])
    conv.convert(audio, 16000, options)  # warm-up
    times, result = [], None
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        result = conv.convert(audio, 16000, options)
        times.append(time.perf_counter() - t0)
    np.save(Path(spec["out"]), result.audio)
    return {"times": times, "stages": result.timings}


def bench_precision(*, seconds: float = 30.0, repeats: int = 2) -> list[BenchResult]:
    """The whole conversion in each precision (``float32``, ``tf32``), each in a fresh process, on
    full-size untrained models: time, and the audio's distance from the float32 conversion
    (spectrogram and waveform correlation, SNR) — what a faster precision costs in parity.
    On a CPU both precisions compute the same thing (TF32 is a GPU mode)."""
    import tempfile
    from pathlib import Path

    from .backend import PRECISIONS
    from .metrics import audio_diff

    results: list[BenchResult] = []
    with tempfile.TemporaryDirectory(prefix="mlx-rvc-bench-") as tmp:
        (Path(tmp) / "models").mkdir()
        models = build_random_library(Path(tmp) / "models")
        audio = {}
        for precision in PRECISIONS:
            out = Path(tmp) / f"{precision}.npy"
            spec = {**models, "seconds": seconds, "repeats": repeats, "precision": precision, "out": str(out)}
            env = {**os.environ, "MLX_RVC_PRECISION": precision}
            code = ("import json,sys,mlx_rvc.bench as b;"
                    "print('RESULT'+json.dumps(b._precision_worker(json.loads(sys.argv[1]))))")
            run = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, env=env)
            line = next((l for l in run.stdout.splitlines() if l.startswith("RESULT")), None)
            if run.returncode != 0 or line is None:
                err = run.stderr.strip().splitlines()
                raise RuntimeError(f"benchmark of precision {precision} failed: {err[-1] if err else run.returncode}")
            r = json.loads(line[len("RESULT"):])
            audio[precision] = np.load(out)
            diff = audio_diff(audio[precision], audio[PRECISIONS[0]])
            results.append(BenchResult(
                f"pipeline {seconds:g} s, precision {precision}", r["times"], seconds,
                extra={"stages": r["stages"], "spec_corr_vs_float32": diff.spec_corr,
                       "wave_corr_vs_float32": diff.wave_corr, "snr_db_vs_float32": diff.snr_db}))
    return results
