"""FCPE speed: mlx-rvc's port against torchfcpe on the same CPU and clips, interleaved rounds, one run.

The clips are the pitch benchmark's (``mlx-rvc bench pitch --save-clips CLIPS.npz``, ~100 s).
Each round times mlx-rvc's FCPE on every clip (log-mel, network, decoding), then torchfcpe in a
fresh process of the torch environment (``reference/time_torchfcpe.py``, warm-up excluded); the
best round of each is reported, with their ratio, as JSON:

    python benchmarks/bench_fcpe_speed.py CLIPS.npz --torch-python TORCH_VENV/bin/python \\
        --fcpe fcpe_c_v001.pt [--rounds 3] [--json-out benchmarks/results/pitch_fcpe_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mlx_rvc  # noqa: F401  (fast BLAS before mlx.core)
from mlx_rvc.importer import import_model
from mlx_rvc.models import fcpe

HERE = Path(__file__).parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clips")
    ap.add_argument("--torch-python", required=True)
    ap.add_argument("--fcpe", required=True, help="fcpe_c_v001.pt")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    data = np.load(args.clips)
    clips = [data[k] for k in data.files if k.startswith("audio/")]
    seconds = sum(c.size for c in clips) / 16000
    with tempfile.TemporaryDirectory() as tmp:
        model = fcpe.load(import_model(args.fcpe, out=Path(tmp) / "fcpe").path)
    model.f0(clips[0][:16000])  # warm-up
    ours, theirs = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for c in clips:
            model.f0(c)
        ours.append(time.perf_counter() - t0)
        out = subprocess.run([args.torch_python, str(HERE / "reference" / "time_torchfcpe.py"), args.clips,
                              "--threads", str(args.threads)], capture_output=True, text=True, check=True,
                             cwd=HERE / "reference")
        ref = json.loads(out.stdout.strip().splitlines()[-1])
        theirs.append(ref["seconds"])
    result = {
        "audio_seconds": seconds, "rounds": args.rounds,
        "mlx_rvc_seconds": min(ours), "torchfcpe_seconds": min(theirs),
        "speedup": min(theirs) / min(ours), "all_mlx_rvc": ours, "all_torchfcpe": theirs,
        "torch": ref["torch"], "torch_threads": args.threads, "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
