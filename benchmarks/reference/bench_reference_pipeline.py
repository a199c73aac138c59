"""Times the PyTorch reference pipeline (RVC WebUI ``Pipeline.pipeline``) on given models and audio.

Run side by side with ``mlx-rvc bench pipeline`` on the same files (see benchmarks/README.md):

    /tmp/torchenv/bin/python benchmarks/reference/bench_reference_pipeline.py --rvc RVC-WebUI \\
        --voice OUT/models/weights/v2_48k_f0.pth --hubert OUT/models/hubert_base --rmvpe-dir OUT/models \\
        --index voice.index --seconds 30 [--json]

Prints per-stage seconds (features, f0, synthesis, as the reference counts them), the whole
call, and the process's peak memory. 2 torch threads, float32, CPU, warm (one run first).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rvc", type=Path, required=True)
    ap.add_argument("--voice", type=Path, required=True, help="voice .pth")
    ap.add_argument("--hubert", type=Path, required=True, help="HF HuBERT directory")
    ap.add_argument("--rmvpe-dir", type=Path, required=True, help="directory holding rmvpe.pt")
    ap.add_argument("--index", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--audio", type=Path, default=None, help="16 kHz wav (default: espeak speech)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(args.rvc.resolve()))
    sys.path.insert(0, str(Path(__file__).parent))
    os.chdir(args.rvc)
    os.environ["rmvpe_root"] = str(args.rmvpe_dir.resolve())
    import torch

    torch.set_num_threads(2)
    import infer.hubert as H
    from infer.module import models
    from infer.vc.pipeline import Pipeline

    H.HUBERT_MODEL_PATH = args.hubert.resolve()
    cpt = torch.load(args.voice, map_location="cpu", weights_only=True)
    tgt_sr = cpt["config"][-1]
    cpt["config"][-3] = cpt["weight"]["emb_g.weight"].shape[0]
    version, if_f0 = cpt.get("version", "v1"), cpt.get("f0", 1)
    cls = {("v1", 1): models.SynthesizerTrnMs256NSFsid, ("v1", 0): models.SynthesizerTrnMs256NSFsid_nono,
           ("v2", 1): models.SynthesizerTrnMs768NSFsid, ("v2", 0): models.SynthesizerTrnMs768NSFsid_nono}[(version, if_f0)]
    net_g = cls(*cpt["config"], is_half=False)
    del net_g.enc_q
    net_g.load_state_dict(cpt["weight"], strict=False)
    net_g.eval().float()
    hubert = H.load_hubert_model("cpu", is_half=False)

    class Cfg:  # the reference's CPU Config() values
        x_pad, x_query, x_center, x_max, is_half, device = 1, 6, 38, 41, False, "cpu"

    pipe = Pipeline(tgt_sr, Cfg())
    if args.audio:
        import soundfile as sf

        audio, sr = sf.read(args.audio, dtype="float32")
        assert sr == 16000, "give 16 kHz audio"
    else:
        from make_fullsize import speech

        audio = speech(args.seconds, seed=7)
    index = str(args.index) if args.index else ""

    def run():
        times = [0.0, 0.0, 0.0]
        t0 = time.perf_counter()
        out = pipe.pipeline(hubert, net_g, 0, audio.copy(), times, 0, "rmvpe" if if_f0 else "pm", index, 0.75,
                            if_f0, tgt_sr, 0, 0.25, version, 0.33)
        return time.perf_counter() - t0, times, out

    run()  # warm-up (loads RMVPE, allocations)
    total, times, out = run()
    report = {"seconds_of_audio": len(audio) / 16000, "total": round(total, 3),
              "features": round(times[0], 3), "f0": round(times[1], 3), "synthesis": round(times[2], 3),
              "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "output_samples": int(len(out))}
    print(json.dumps(report, indent=2) if args.json else
          " ".join(f"{k}={v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
