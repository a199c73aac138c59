"""The PyTorch reference pipeline and mlx-rvc on the same input and models, alternated in one session.

    python benchmarks/side_by_side.py --ref-python /tmp/torchenv/bin/python --rvc RVC-WebUI \\
        --voice OUT/models/weights/v2_48k_f0.pth --hubert OUT/models/hubert_base --rmvpe-dir OUT/models \\
        --index voice.index -m full48 [--encoder NAME] [--pitch-model NAME] [--seconds 30] [--rounds 2] [--json]

``--voice/--hubert/--rmvpe-dir/--index`` are the reference's files; ``-m/--encoder/--pitch-model``
the same models imported into the mlx-rvc library. The input is ``--seconds`` of generated speech
(``mlx_rvc.bench.speech_like``) written once as a 16 kHz wav that both sides read. Each round runs
the reference (warm-up, then one timed conversion: benchmarks/reference/bench_reference_pipeline.py)
and then mlx-rvc (``mlx-rvc bench pipeline --audio``: cold, then one timed warm conversion), each
in a fresh process, never at the same time. Reported: the best time of each side over the
rounds, per stage, the ratio, and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _json_of(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        err = out.stderr.strip().splitlines()
        raise SystemExit(f"{cmd[0]} failed: {err[-1] if err else out.returncode}")
    return json.loads(out.stdout[out.stdout.index("{"):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref-python", required=True, help="a Python with torch and the reference's requirements")
    ap.add_argument("--rvc", type=Path, required=True, help="RVC WebUI checkout")
    ap.add_argument("--voice", type=Path, required=True)
    ap.add_argument("--hubert", type=Path, required=True)
    ap.add_argument("--rmvpe-dir", type=Path, required=True)
    ap.add_argument("--index", type=Path, default=None)
    ap.add_argument("-m", "--model", required=True, help="the voice in the mlx-rvc library")
    ap.add_argument("--encoder", default=None)
    ap.add_argument("--pitch-model", default=None)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import soundfile as sf

    from mlx_rvc.bench import speech_like

    ref, ours = [], []
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as tmp:
        wav = Path(tmp) / "speech.wav"
        sf.write(wav, speech_like(args.seconds), 16000, subtype="FLOAT")
        ref_cmd = [args.ref_python, str(HERE / "reference" / "bench_reference_pipeline.py"), "--rvc", str(args.rvc),
                   "--voice", str(args.voice), "--hubert", str(args.hubert), "--rmvpe-dir", str(args.rmvpe_dir),
                   "--audio", str(wav), "--json"] + (["--index", str(args.index)] if args.index else [])
        our_cmd = [sys.executable, "-m", "mlx_rvc", "bench", "pipeline", "-m", args.model, "--audio", str(wav),
                   "--repeats", "1", "--json"]
        our_cmd += (["--encoder", args.encoder] if args.encoder else []) + (
            ["--pitch-model", args.pitch_model] if args.pitch_model else [])
        for i in range(args.rounds):
            ref.append(_json_of(ref_cmd))
            ours.append(_json_of(our_cmd)["results"][0])
            print(f"round {i + 1}: reference {ref[-1]['total']:.2f} s, mlx-rvc {ours[-1]['best']:.2f} s", file=sys.stderr)
    r = min(ref, key=lambda x: x["total"])
    o = min(ours, key=lambda x: x["best"])
    stages = o["extra"]["stages"]
    report = {
        "seconds_of_audio": args.seconds,
        "reference": {"total": r["total"], "pitch": r["f0"], "features": r["features"], "synthesis": r["synthesis"],
                      "peak_rss_gb": r["peak_rss_bytes"] / 1e9, "all_totals": [x["total"] for x in ref]},
        "mlx_rvc": {"total": o["best"], **{k: round(v, 3) for k, v in stages.items()},
                    "peak_rss_gb": o["peak_rss_bytes"] / 1e9, "all_totals": [x["best"] for x in ours]},
        "speedup": r["total"] / o["best"],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.seconds:g} s of audio, best of {args.rounds} rounds")
    print(f"{'':12}{'reference':>12}{'mlx-rvc':>12}")
    for label, rk, ok in [("pitch", "pitch", "pitch"), ("features", "features", "features"),
                          ("synthesis", "synthesis", "synthesis"), ("total", "total", "total")]:
        print(f"{label:12}{report['reference'][rk]:12.2f}{report['mlx_rvc'].get(ok, float('nan')):12.2f}")
    print(f"{'peak RSS GB':12}{report['reference']['peak_rss_gb']:12.2f}{report['mlx_rvc']['peak_rss_gb']:12.2f}")
    print(f"mlx-rvc is {report['speedup']:.2f}x the reference's speed")


if __name__ == "__main__":
    main()
