"""Full-size RMVPE fixtures from the PyTorch reference, with voicing decisions that matter.

A randomly initialised RMVPE (the released shape, ``E2E(4, 1, (2, 2))``) voices every frame or
none, so "identical voiced/unvoiced decisions" would be checked trivially. Here the output
layer's bias is shifted, after one pass over the speech, so that a chosen fraction of frames has
its peak salience above the reference's threshold (0.03): the decision then hinges on numbers
near the threshold, where float32 rounding could flip it.

Writes ``OUT/models/rmvpe.pt`` (a float16 state dict, as the released file), ``OUT/rmvpe_30s.npz``
(input, log-mel, salience, f0, threshold) and ``OUT/fixtures.json`` in the format
``mlx-rvc parity`` reads, plus the reference's own timings (2 torch threads, warm) per stage.

Needs the torch environment and an RVC WebUI checkout (see make_fullsize.py, whose speech
generator and randomisation this reuses):

    TORCH_VENV/bin/python benchmarks/reference/make_rmvpe_fixtures.py --rvc PATH/TO/RVC-WebUI \\
        --out FULLSIZE_DIR/rmvpe [--seconds 30] [--voiced 0.6]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from make_fullsize import SEED, TORCH_THREADS, fp16_round, randomise, speech

THRESHOLD = 0.03  # the pipeline's salience threshold


def best_of(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rvc", type=Path, required=True, help="RVC WebUI checkout")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--voiced", type=float, default=0.6, help="target fraction of voiced frames")
    args = ap.parse_args()
    sys.path.insert(0, str(args.rvc.resolve()))
    os.chdir(args.rvc)
    import torch
    import infer.rmvpe as R

    torch.set_num_threads(TORCH_THREADS)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "models").mkdir(exist_ok=True)
    torch.manual_seed(SEED + 13)
    net = R.E2E(4, 1, (2, 2)).eval()
    randomise(net, torch, rng_seed=SEED + 14)
    fp16_round(net, torch)
    x = speech(args.seconds, seed=16)

    # calibrate: per-frame peak logit with the bias as drawn, then one constant shift of the bias
    path = args.out / "models" / "rmvpe.pt"

    def save():
        torch.save(collections.OrderedDict((k, v.half() if v.is_floating_point() else v)
                                           for k, v in net.state_dict().items()), path)

    save()
    rm = R.RMVPE(str(path), is_half=False, device="cpu")
    hidden = rm.mel2hidden(rm.extract_mel(x, center=True))[0].double().numpy()
    peak = np.log(hidden.max(axis=1)) - np.log1p(-hidden.max(axis=1))
    target = np.log(THRESHOLD / (1 - THRESHOLD))
    shift = target - np.quantile(peak, 1 - args.voiced)
    with torch.no_grad():
        net.fc[1].bias.add_(float(shift))
    fp16_round(net, torch)
    save()

    rm = R.RMVPE(str(path), is_half=False, device="cpu")
    mel = rm.extract_mel(x, center=True)
    hidden = rm.mel2hidden(mel)[0].numpy()
    f0 = rm.decode(hidden, thred=THRESHOLD)
    peak = hidden.max(axis=1)
    near = np.abs(np.log(peak / THRESHOLD))
    timings = {
        "mel": best_of(lambda: rm.extract_mel(x, center=True)),
        "mel2hidden": best_of(lambda: rm.mel2hidden(mel)),
        "infer_from_audio": best_of(lambda: rm.infer_from_audio(x, thred=THRESHOLD)),
    }
    arrays = {"input_16k": x, "mel": mel[0].numpy(), "hidden": hidden, "f0": f0, "thred": np.array(THRESHOLD)}
    np.savez_compressed(args.out / "rmvpe_30s.npz", **arrays)
    meta = {
        "reference": "RVC WebUI (RVC-Project)", "size": "full", "torch": torch.__version__,
        "torch_threads": TORCH_THREADS,
        "timings_seconds": {f"rmvpe {args.seconds:g}s {k}": round(v, 4) for k, v in timings.items()},
        "fixtures": {"rmvpe_30s.npz": {
            "producer": "infer.rmvpe.RMVPE(is_half=False, cpu): extract_mel(center=True) -> mel2hidden -> decode(0.03); "
                        "E2E(4, 1, (2, 2)) random, output bias shifted so that a set fraction of frames is voiced",
            "model": "models/rmvpe.pt",
            "voiced_fraction": float(np.mean(f0 > 0)),
            "frames_within_1pct_of_threshold": int(np.sum(near < 0.01)),
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
        }},
    }
    (args.out / "fixtures.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps({k: v for k, v in meta.items() if k != "fixtures"} | meta["fixtures"]["rmvpe_30s.npz"], indent=1))


if __name__ == "__main__":
    main()
