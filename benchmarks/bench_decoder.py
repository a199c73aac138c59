"""NSF-HiFiGAN decoder per stage: residual blocks by FFT overlap-save against direct convolutions, same run.

    python benchmarks/bench_decoder.py [--version v2] [--rate 48000] [--seconds 30] [--rounds 10] \
        [--repeats 2] [--no-f0] [--synth] [--json]
    python benchmarks/bench_decoder.py --tune [--rounds 8]

A full-size voice with random weights (as ``mlx-rvc bench synth``) decodes ``--seconds`` of
latents in the synthesizer's pieces (``nsf.CPU_PIECE_FRAMES``), three ways: ``before`` (direct
convolutions, MLX's default 32 MiB buffer cache), ``direct`` (direct convolutions, decoding
buffer cache) and ``fft`` (the default: FFT overlap-save where planned, decoding buffer cache).
Whole-decoder calls run as the synthesizer runs them (pieces on ``forms.cpu.DECODE_WORKERS`` threads).

Stage times (``conv_pre``; per upsampling: the transposed convolution with its harmonic-source
branch, then the residual blocks; ``conv_post``) are the best of ``--rounds`` one-thread runs of
one interior piece per path, every stage on the piece's full context (no cropping), the paths alternating run by run so that load from other processes
hits all alike, multiplied by the number of pieces. Whole-decoder (and with ``--synth``
whole-synthesizer) times are the best of ``--repeats`` alternating calls. Also reported: the
largest difference between the fft and direct audio, MLX peak memory, the kernel spectra's size.

``--tune`` times every residual-block convolution (K, d) of RVC's decoders at each stage's
channel count and piece length, directly and by FFT at each transform length, alternating:
the measurements behind :data:`mlx_rvc.forms.fftconv.FFT_PLAN`.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import mlx_rvc  # noqa: F401  (installs the fast BLAS before MLX loads)
import mlx.core as mx
from mlx_rvc.forms import cpu
from mlx_rvc.forms.cpu import conv1d
from mlx_rvc.forms.fftconv import fft_conv1d, fft_size, kernel_spectrum
from mlx_rvc.models import nsf
from mlx_rvc.models import synthesizer as synth
from mlx_rvc.models.layers import LRELU_SLOPE, Conv1d, buffer_cache, leaky_relu
from mlx_rvc.models.nsf import FINAL_LRELU_SLOPE, Generator, sine_excitation

# name: (cpu.FFT_CONV, nsf.DECODE_BUFFER_CACHE); 0 keeps MLX's default 32 MiB buffer cache
PATHS = {"before": (False, 0), "direct": (False, nsf.DECODE_BUFFER_CACHE), "fft": (True, nsf.DECODE_BUFFER_CACHE)}


def staged_forward(dec: Generator, x: mx.array, g: mx.array, sine: mx.array | None, times: dict) -> mx.array:
    """``Generator._forward``, evaluated and timed stage by stage (seconds added into ``times``)."""

    def stage(name, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        mx.eval(out)
        times[name] = times.get(name, 0.0) + time.perf_counter() - t0
        return out

    n_k = len(dec.cfg.resblock_kernel_sizes)
    har = stage("source", dec.m_source, sine) if sine is not None else None
    x = stage("conv_pre", lambda x: dec.conv_pre(x) + dec.cond(g), x)
    for i, up in enumerate(dec.ups):
        ch = up.out_channels

        def upsample(x, i=i, up=up):
            x = up(leaky_relu(x, LRELU_SLOPE))
            return x + dec.noise_convs[i](har) if har is not None else x

        def blocks(x, i=i):
            xs = dec.resblocks[i * n_k](x)
            for j in range(1, n_k):
                xs = xs + dec.resblocks[i * n_k + j](x)
            return xs / n_k

        x = stage(f"ups{i} ({ch} ch)", upsample, x)
        x = stage(f"resblocks{i} ({ch} ch)", blocks, x)
    return stage("conv_post", lambda x: mx.tanh(dec.conv_post(leaky_relu(x, FINAL_LRELU_SLOPE)))[..., 0], x)


def one_piece(dec: Generator, z: mx.array, g: mx.array, sine: mx.array | None) -> tuple:
    """The first full-size interior piece ``Generator.__call__`` decodes, with its context."""
    upp, margin = dec.cfg.upp, dec.receptive_radius_frames() + 2
    lo, hi = max(nsf.CPU_PIECE_FRAMES - margin, 0), 2 * nsf.CPU_PIECE_FRAMES + margin
    if hi > z.shape[1]:
        raise SystemExit(f"--seconds must cover {hi} frames for a full interior piece")
    return z[:, lo:hi], g, sine[:, lo * upp:hi * upp] if sine is not None else None


def spectrum_bytes(dec: Generator) -> int:
    total = 0
    for _, m in dec.named_modules():
        if isinstance(m, Conv1d) and (n_fft := cpu.fft_plan(m)) is not None:
            total += cpu._spectrum(m, n_fft).nbytes
    return total


def tune(rounds: int) -> None:
    """Best seconds per convolution on one 48k piece: direct against FFT at each transform length."""
    rng = np.random.default_rng(0)
    piece = (nsf.CPU_PIECE_FRAMES + 28) * 12  # 256-ch samples of a v2 48k piece with context
    print(f"{'ch':>4s} {'K':>3s} {'d':>2s} {'samples':>8s} {'direct':>8s}  fft by length (ms)  -> best, planned")
    with buffer_cache(4 << 30):  # room for every length's buffers at once: no page faults between runs
        for channels, samples in ((256, piece), (128, piece * 10), (64, piece * 20), (32, piece * 40)):
            x = mx.array(rng.standard_normal((1, samples, channels)).astype(np.float32))
            for k, d in ((7, 1), (7, 3), (7, 5), (11, 1), (11, 3), (11, 5)):
                w = mx.array((rng.standard_normal((channels, k, channels)) / np.sqrt(k * channels)).astype(np.float32))
                pad = d * (k - 1) // 2
                span = (k - 1) * d + 1
                runs = {"direct": lambda w=w, d=d, pad=pad: conv1d(x, w, dilation=d, padding=pad)}
                for n in (32, 64, 128, 256, 512):
                    if n >= span + 8:
                        spec = kernel_spectrum(w, dilation=d, n_fft=n)
                        runs[n] = lambda s=spec, k=k, d=d, pad=pad: fft_conv1d(x, s, kernel_size=k, dilation=d,
                                                                               padding=pad)
                best = {name: float("inf") for name in runs}
                for _ in range(rounds):
                    for name, fn in runs.items():
                        t0 = time.perf_counter()
                        mx.eval(fn())
                        best[name] = min(best[name], time.perf_counter() - t0)
                fastest = min((n for n in best if n != "direct"), key=best.get)
                print(f"{channels:4d} {k:3d} {d:2d} {samples:8d} {best['direct'] * 1e3:8.1f}  "
                      + " ".join(f"{n}:{best[n] * 1e3:.1f}" for n in best if n != "direct")
                      + f"  -> {fastest} ({best['direct'] / best[fastest]:.2f}x), planned {fft_size(k, d, channels)}",
                      flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", default="v2", choices=["v1", "v2"])
    ap.add_argument("--rate", type=int, default=48000, choices=[32000, 40000, 48000])
    ap.add_argument("--no-f0", action="store_true")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=10, help="runs of one piece per path for the stage times")
    ap.add_argument("--repeats", type=int, default=2, help="runs of the whole decoder (and synthesizer) per path")
    ap.add_argument("--synth", action="store_true", help="also time the whole synthesizer both ways")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--tune", action="store_true", help="time each convolution at each transform length instead")
    args = ap.parse_args()
    if args.tune:
        tune(args.rounds)
        return

    f0 = not args.no_f0
    cfg = synth.standard_config(args.version, args.rate, f0)
    model = synth.build(cfg, synth.random_weights(cfg, seed=0))
    dec = model.dec
    frames = int(round(args.seconds * synth.FRAME_RATE))
    rng = np.random.default_rng(0)
    z = mx.array(rng.standard_normal((1, frames, cfg.inter_channels)).astype(np.float32))
    g = mx.array(rng.standard_normal((1, 1, cfg.gin_channels)).astype(np.float32))
    pitchf = (180 + 40 * np.sin(np.arange(frames) / 50)).astype(np.float32)[None]
    sine = None
    if f0:
        upp = dec.cfg.upp
        sine = mx.array(sine_excitation(pitchf, upp=upp, sample_rate=args.rate,
                                        noise=rng.standard_normal((1, frames * upp, 1))))
    phone = mx.array(rng.standard_normal((1, frames, cfg.phone_channels)).astype(np.float32))
    synth_args = (phone, mx.array([frames]), mx.array([0]))
    synth_kwargs = {"pitch": mx.array(np.full((1, frames), 100, np.int32)), "pitchf": pitchf} if f0 else {}

    piece = one_piece(dec, z, g, sine)
    n_pieces = -(-frames // nsf.CPU_PIECE_FRAMES)
    best: dict[str, dict[str, float]] = {p: {} for p in PATHS}
    peak: dict[str, int] = {}
    audio: dict[str, np.ndarray] = {}
    for p, (flag, cache) in PATHS.items():  # warm-up (kernel spectra, allocations)
        cpu.FFT_CONV, nsf.DECODE_BUFFER_CACHE = flag, cache
        audio[p] = np.asarray(dec(*piece, chunk_frames=nsf.CPU_PIECE_FRAMES))

    def keep(p: str, times: dict) -> None:
        for k, v in times.items():
            best[p][k] = min(best[p].get(k, float("inf")), v)

    # stages: one piece at a time, the paths alternating, so that the best of many short runs is taken
    for _ in range(args.rounds):
        for p, (flag, cache) in PATHS.items():
            cpu.FFT_CONV, nsf.DECODE_BUFFER_CACHE = flag, cache
            times: dict[str, float] = {}
            with buffer_cache(cache):
                staged_forward(dec, *piece, times)
            keep(p, {k: v * n_pieces for k, v in times.items()})
    for _ in range(args.repeats):
        for p, (flag, cache) in PATHS.items():
            cpu.FFT_CONV, nsf.DECODE_BUFFER_CACHE = flag, cache
            times = {}
            mx.reset_peak_memory()
            t0 = time.perf_counter()
            mx.eval(dec(z, g, sine, chunk_frames=nsf.CPU_PIECE_FRAMES))
            times["decoder (Generator call)"] = time.perf_counter() - t0
            peak[p] = max(peak.get(p, 0), mx.get_peak_memory())
            if args.synth:
                t0 = time.perf_counter()
                mx.eval(model.infer(*synth_args, **synth_kwargs))
                times["synthesizer (infer)"] = time.perf_counter() - t0
            keep(p, times)
    cpu.FFT_CONV, nsf.DECODE_BUFFER_CACHE = PATHS["fft"]

    diff = audio["fft"] - audio["direct"]
    report = {
        "voice": f"{args.version} {args.rate // 1000}k {'f0' if f0 else 'nof0'}",
        "audio_seconds": args.seconds,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "stages": {k: {p: best[p][k] for p in PATHS} for k in best["fft"]},
        "audio_rel_rms_diff": float(np.sqrt(np.mean(diff**2) / np.mean(audio["direct"] ** 2))),
        "audio_max_abs_diff": float(np.abs(diff).max()),
        "peak_mlx_bytes": peak,
        "spectrum_bytes": spectrum_bytes(dec),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['voice']}, {args.seconds:g} s of audio ({n_pieces} pieces), seconds: stages best of "
          f"{args.rounds} runs of one piece x {n_pieces}, whole calls best of {args.repeats}")
    print(f"{'stage':28s}" + "".join(f"{p:>9s}" for p in PATHS) + "  before/fft  direct/fft")
    for k, v in report["stages"].items():
        print(f"{k:28s}" + "".join(f"{v[p]:9.3f}" for p in PATHS)
              + f"  {v['before'] / v['fft']:10.2f}  {v['direct'] / v['fft']:10.2f}")
    print(f"audio fft vs direct: rel rms {report['audio_rel_rms_diff']:.2e}, max |diff| {report['audio_max_abs_diff']:.2e}")
    print("MLX peak memory: " + ", ".join(f"{p} {b / 2**20:.0f} MiB" for p, b in peak.items())
          + f"; kernel spectra {report['spectrum_bytes'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
