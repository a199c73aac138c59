"""RMVPE for N seconds of speech: MLX per stage, and the PyTorch reference on the same weights in the same run.

    python benchmarks/bench_rmvpe.py --model rmvpe.pt [--seconds 30] [--repeats 3] \\
        [--ref-python TORCH_VENV/bin/python --rvc PATH/TO/RVC-WebUI] [--json]

``--model`` is a reference RMVPE checkpoint (the released ``rmvpe.pt`` or one made by
``benchmarks/reference/make_rmvpe_fixtures.py``); it is imported in memory for MLX and loaded by the
reference's own ``infer.rmvpe.RMVPE`` in a subprocess of ``--ref-python`` (a Python with torch;
mlx-rvc never imports torch). Without ``--ref-python`` only MLX is timed. The two never run at
the same time: they take turns, one round of every stage each, so that load from other processes
on a shared machine falls on both alike. Reported: best of ``--repeats`` warm rounds per stage, the
ratio of the totals, the largest f0 difference in cents between the two, and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mlx_rvc  # noqa: F401  (installs the fast BLAS before MLX loads)
import mlx.core as mx
from mlx_rvc.bench import speech_like
from mlx_rvc.dsp.f0 import salience_to_f0
from mlx_rvc.dsp.mel import log_mel
from mlx_rvc.importer import convert, read_source
from mlx_rvc.models import rmvpe

REFERENCE = """
import json, os, sys, time
import numpy as np
rvc, model, audio, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, rvc); os.chdir(rvc)
import torch
torch.set_num_threads(threads)
from infer.rmvpe import RMVPE
rm = RMVPE(model, is_half=False, device="cpu")
x = np.load(audio)
mel = rm.extract_mel(x, center=True)
stages = {"mel": lambda: rm.extract_mel(x, center=True), "network": lambda: rm.mel2hidden(mel),
          "total": lambda: rm.infer_from_audio(x, thred=0.03)}
np.save(audio + ".f0.npy", rm.infer_from_audio(x, thred=0.03))
for line in sys.stdin:  # one round of every stage per line read
    times = {}
    for name, fn in stages.items():
        t0 = time.perf_counter(); fn(); times[name] = time.perf_counter() - t0
    print(json.dumps(times), flush=True)
"""


def mlx_stages(model: rmvpe.E2E, x: np.ndarray) -> dict:
    """Stage name -> a function running it once (evaluated)."""
    mel = log_mel(x)
    n = mel.shape[1]
    padded = -(-n // rmvpe.FRAME_MULTIPLE) * rmvpe.FRAME_MULTIPLE
    image = mx.array(np.pad(mel.T, ((0, padded - n), (0, 0)))[None])  # (1, T', 128)
    feats = model.image_features(image)
    mx.eval(feats)
    salience = model.salience(mel)
    return {
        "mel": lambda: log_mel(x),
        "unet": lambda: mx.eval(model.image_features(image)),
        "gru_head": lambda: mx.eval(model.head(feats)),
        "decode": lambda: salience_to_f0(salience),
        "total": lambda: model.f0(x),
    }


def run_round(stages: dict) -> dict:
    times = {}
    for name, fn in stages.items():
        t0 = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - t0
    return times


def best(rounds: list[dict]) -> dict:
    return {k: min(r[k] for r in rounds) for k in rounds[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="reference RMVPE checkpoint (.pt)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ref-python", type=Path, help="a Python with torch to run the reference")
    ap.add_argument("--rvc", type=Path, help="RVC WebUI checkout (with --ref-python)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the reference")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    if args.ref_python and not args.rvc:
        ap.error("--ref-python needs --rvc")
    x = speech_like(args.seconds)
    config, weights = convert(read_source(args.model))
    model = rmvpe.build(rmvpe.RmvpeConfig.from_dict(config), weights)
    stages = mlx_stages(model, x)
    run_round(stages)  # warm-up
    mine, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "x.npy"
        np.save(audio, x)
        ref = None
        if args.ref_python:
            ref = subprocess.Popen([str(args.ref_python), "-c", REFERENCE, str(args.rvc.resolve()),
                                    str(args.model.resolve()), str(audio), str(args.threads)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

            def ref_round() -> dict:
                ref.stdin.write("\n")
                ref.stdin.flush()
                line = ref.stdout.readline()
                if not line:
                    sys.exit(f"reference failed:\n{ref.stderr.read()[-2000:]}")
                return json.loads(line)

            ref_round()  # warm-up (its first line also waits for the model to load)
        for _ in range(args.repeats):  # alternate: MLX round, then reference round
            mine.append(run_round(stages))
            if ref:
                theirs.append(ref_round())
        if ref:
            ref.stdin.close()
            ref.wait()
            ref_f0 = np.load(str(audio) + ".f0.npy")
    f0 = model.f0(x)
    mlx_best = best(mine)
    result = {"seconds_of_audio": args.seconds, "config": config, "mlx": mlx_best,
              "mlx_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if theirs:
        result["reference"] = best(theirs)
        both = (f0 > 0) & (ref_f0 > 0)
        cents = 1200 * np.abs(np.log2(f0[both] / ref_f0[both])) if both.any() else np.zeros(1)
        result["agreement"] = {"voicing": float(np.mean((f0 > 0) == (ref_f0 > 0))),
                               "max_cents": float(cents.max())}
        result["ratio_mlx_over_reference"] = mlx_best["total"] / result["reference"]["total"]

    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"RMVPE, {args.seconds:g} s of speech, best of {args.repeats} alternating rounds (seconds)")
    for stage, t in mlx_best.items():
        print(f"  mlx {stage:<10} {t:8.3f}")
    if "reference" in result:
        for stage, t in result["reference"].items():
            print(f"  ref {stage:<10} {t:8.3f}")
        print(f"  mlx / reference: {result['ratio_mlx_over_reference']:.2f}x; "
              f"voicing agreement {result['agreement']['voicing']:.4%}, max |Δf0| {result['agreement']['max_cents']:.2e} cents")
    print(f"  peak RSS {result['mlx_peak_rss_bytes'] / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
