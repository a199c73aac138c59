"""Times the PyTorch reference (RVC WebUI) on a CUDA GPU: synthesizer, HuBERT, RMVPE and the whole
pipeline, each in float32 (TF32 off: what mlx-rvc computes by default), TF32 (torch's default for
cuDNN convolutions) and float16 (the reference's ``is_half``).

    python3 benchmarks/reference/bench_reference_gpu.py --rvc RVC_WEBUI --seconds 30 [--json OUT.json]

``--rvc`` is a checkout of RVC-Project/Retrieval-based-Voice-Conversion-WebUI (its ``infer``,
``tools`` and ``configs``); the reference's own modules are imported from there. Full-size,
untrained models (v2 48 kHz voice with an index, HuBERT-base, RMVPE) are made in a temporary
directory by ``make_fullsize.py``'s helpers. The audio is the clip mlx-rvc's ``bench`` converts
(``src/mlx_rvc/assets/demo_speech.flac`` repeated), at 16 kHz. Every time is the best of
``--repeats`` runs after two warm-ups, with ``torch.cuda.synchronize()`` around each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ASSET = HERE.parent.parent / "src" / "mlx_rvc" / "assets" / "demo_speech.flac"
MODES = {  # name -> (TF32 allowed, float16)
    "float32": (False, False),
    "tf32": (True, False),
    "float16": (False, True),
}


def clip_16k(seconds: float) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    x, sr = sf.read(ASSET, dtype="float64", always_2d=True)
    x = resample_poly(x.mean(axis=1), 16000, sr)
    n = int(seconds * 16000)
    x = np.tile(x, n // len(x) + 1)[:n]
    return (x + np.random.default_rng(0).standard_normal(n) * 1e-3).astype(np.float32)


def best_time(torch, fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rvc", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rvc = args.rvc.resolve()
    sys.path.insert(0, str(rvc))
    sys.path.insert(0, str(HERE))
    import torch

    import infer.hubert as H
    import infer.rmvpe as R
    from infer.module import models
    from infer.vc.pipeline import Pipeline
    from make_fullsize import SEED, _index, make_hubert, make_voice, randomise, synth_inputs

    cuda = torch.device("cuda")
    report = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0), "seconds": args.seconds,
              "cuda_graph_env": os.environ.get("RVC_CUDA_GRAPH"), "modes": {}}
    audio = clip_16k(args.seconds)
    frames = int(args.seconds * 100)
    with tempfile.TemporaryDirectory(prefix="rvc-ref-gpu-") as tmp:
        out = Path(tmp)
        voice_path = out / "models" / "weights" / "v2_48k_f0.pth"
        config, cls_name = make_voice(torch, models, rvc, "v2", "48k", 1, voice_path)
        H.HUBERT_MODEL_PATH = make_hubert(torch, out).resolve()
        torch.manual_seed(SEED + 3)
        net = R.E2E(4, 1, (2, 2)).eval()
        randomise(net, torch, rng_seed=SEED + 4)
        rmvpe_path = out / "models" / "rmvpe.pt"
        torch.save(net.state_dict(), rmvpe_path)
        os.environ["rmvpe_root"] = str(rmvpe_path.parent)
        index = out / "voice768.index"
        _index(index, 768, seed=768)
        cpt = torch.load(voice_path, map_location="cpu", weights_only=True)
        cls = getattr(models, cls_name)

        for mode, (tf32, half) in MODES.items():
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            dtype = torch.float16 if half else torch.float32
            row = {}
            net_g = cls(*config, is_half=half)
            del net_g.enc_q
            net_g.load_state_dict(cpt["weight"], strict=False)
            net_g = net_g.eval().to(cuda)
            net_g = net_g.half() if half else net_g.float()
            phone, lengths, pitch, pitchf, sid = (t.to(cuda) for t in synth_inputs(torch, config, "v2", 1, frames, seed=2))
            phone = phone.to(dtype)
            with torch.no_grad():
                row["synthesizer"] = best_time(torch, lambda: net_g.infer(phone, lengths, pitch, pitchf, sid),
                                               args.repeats)
                hubert = H.load_hubert_model(cuda, is_half=half)
                src = torch.from_numpy(audio)[None].to(cuda, dtype)
                row["hubert_v2"] = best_time(torch, lambda: H.extract_hubert_features(hubert, src, "v2"), args.repeats)
                rm = R.RMVPE(str(rmvpe_path), is_half=half, device=cuda)
                row["rmvpe"] = best_time(torch, lambda: rm.infer_from_audio(audio, thred=0.03), args.repeats)

            class Cfg:  # the reference's Config.device_config() values for this precision
                x_pad, x_query, x_center, x_max = (3, 10, 60, 65) if half else (1, 6, 38, 41)
                is_half, device = half, cuda

            pipe = Pipeline(config[-1], Cfg())
            stages = [0.0, 0.0, 0.0]

            def whole():
                stages[:] = [0.0, 0.0, 0.0]
                pipe.pipeline(hubert, net_g, 0, audio.copy(), stages, 0, "rmvpe", str(index), 0.75, 1, config[-1], 0,
                              0.25, "v2", 0.33)

            row["pipeline"] = best_time(torch, whole, args.repeats)
            row["pipeline_stages"] = {"features": stages[0], "f0": stages[1], "synthesis": stages[2]}
            row["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            report["modes"][mode] = row
            print(mode, json.dumps(row), flush=True)
            del net_g, hubert, rm, pipe
            torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
