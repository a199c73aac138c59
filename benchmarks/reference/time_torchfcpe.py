"""Seconds torchfcpe 0.0.4 takes for the clips of CLIPS.npz (warm, the reference's call), as JSON on stdout.

Run by ``benchmarks/bench_fcpe_speed.py`` with the torch environment's Python:

    TORCH_VENV/bin/python benchmarks/reference/time_torchfcpe.py CLIPS.npz [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from make_pitch_fixtures import _import_packages


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clips")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torchfcpe, _ = _import_packages()
    data = np.load(args.clips)
    clips = [torch.from_numpy(data[k]).float().unsqueeze(0) for k in data.files if k.startswith("audio/")]
    model = torchfcpe.spawn_bundled_infer_model(device="cpu")

    def run():
        with torch.no_grad():
            for x in clips:
                model.infer(x, sr=16000, decoder_mode="local_argmax", threshold=0.006)

    model.infer(clips[0][:, :16000], sr=16000)  # warm-up
    t0 = time.perf_counter()
    run()
    print(json.dumps({"seconds": time.perf_counter() - t0, "torch": torch.__version__, "threads": args.threads}))


if __name__ == "__main__":
    main()
