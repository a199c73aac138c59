"""Real-time conversion on full-size untrained models: per-block cost against block size, and
streamed-versus-file quality.

For each voice (v2 48 kHz with a 768-d index, v1 40 kHz with a 256-d index; HuBERT-base and
RMVPE, all untrained, built as ``mlx-rvc bench`` builds them) and each block size, speech is fed
through :func:`mlx_rvc.stream.stream_audio` as fast as possible (one warm-up block first) and
the per-block compute time is recorded; the smallest block whose p95 real-time factor is below 1
keeps up. The streamed output is compared with the file conversion of the same audio
(spectrogram correlation, :func:`mlx_rvc.metrics.audio_diff`) at each ``--lookaheads``, with the
RMS mix off (the live mix follows a 40 ms envelope, the file's a 0.5 s one).

    python benchmarks/bench_stream.py --quality v2_48k --out benchmarks/results/stream_cpu.json
    python benchmarks/bench_stream.py --blocks 0.25,0.5 --voices v2_48k --seconds 8

The machine's load average is recorded with every run: other work on the CPU slows blocks. The
CPU seconds of the process per block bound the wall time on an idle machine from above; with
``OPENBLAS_NUM_THREADS=1`` no BLAS thread spins while waiting, so they count work only.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import mlx_rvc  # noqa: F401  (fast BLAS before MLX)
from mlx_rvc import artifact
from mlx_rvc.backend import describe
from mlx_rvc.bench import _random_index, build_random_library, speech_like
from mlx_rvc.importer import INDEX_NAME
from mlx_rvc.metrics import audio_diff
from mlx_rvc.models import synthesizer
from mlx_rvc.options import ConversionOptions
from mlx_rvc.pipeline import VoiceConverter
from mlx_rvc.stream import PRESETS, StreamingConverter, StreamSettings, reference_latency_formula, stream_audio


def add_v1_voice(root: Path) -> str:
    cfg = synthesizer.standard_config("v1", 40000, f0=True)
    index = root / "v1.index.tmp"
    _random_index(index, dim=256, seed=7)
    artifact.write_model_dir(root / "voice_v1_40k", config={"model_type": "rvc_voice", **cfg.to_dict()},
                             weights=synthesizer.random_weights(cfg, seed=7), extra_files={INDEX_NAME: index})
    index.unlink()
    return str(root / "voice_v1_40k")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--voices", default="v2_48k,v1_40k")
    ap.add_argument("--blocks", default="0.25,0.5,0.75,1.0", help="block sizes (s) at the reference preset")
    ap.add_argument("--low-latency-blocks", default="0.1,0.15,0.25,0.5", help="block sizes at the low-latency preset")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds of speech per run")
    ap.add_argument("--quality", default="", help="voices whose stream is also compared with the file conversion")
    ap.add_argument("--lookaheads", default="0", help="lookaheads (s) of the quality comparison")
    ap.add_argument("--f0-method", default="rmvpe", help="pitch tracker (an untrained RMVPE's f0 is erratic: pm "
                    "isolates the converter in the quality comparison)")
    ap.add_argument("--presets", default="reference,low-latency", help="presets of the quality comparison")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    results = {"system": describe(), "load_before": os.getloadavg(), "runs": [], "quality": []}
    speech = speech_like(args.seconds)
    with tempfile.TemporaryDirectory(prefix="mlx-rvc-stream-") as tmp:
        models = build_random_library(tmp)
        voices = {"v2_48k": models["voice"], "v1_40k": add_v1_voice(Path(tmp))}
        for name in args.voices.split(","):
            converter = VoiceConverter(voices[name], encoder=models["encoder"], pitch_model=models["pitch_model"],
                                       keep_models=True)
            for preset, blocks in (("reference", args.blocks), ("low-latency", args.low_latency_blocks)):
                for block in [float(b) for b in blocks.split(",") if b]:
                    settings = StreamSettings(**{**PRESETS[preset].__dict__, "block": block})
                    options = ConversionOptions(f0_method=args.f0_method)
                    streamer = StreamingConverter(converter, options, settings=settings)
                    t0 = time.perf_counter()
                    _, report = stream_audio(streamer, speech)
                    d = report.as_dict()
                    d.pop("realtime_factor_per_block")
                    run = {"voice": name, "preset": preset, "settings": settings.__dict__, "wall_seconds":
                           time.perf_counter() - t0, "load": os.getloadavg(),
                           "reference_latency_formula_seconds": reference_latency_formula(settings), **d}
                    results["runs"].append(run)
                    if args.out:  # as it goes: a long sweep leaves what it measured
                        args.out.write_text(json.dumps(results, indent=2))
                    print(f"{name} {preset} block {block:g}: p95 RTF {d['realtime_factor']['p95']:.2f}, median "
                          f"{d['realtime_factor']['median']:.2f}, CPU p95 {d['cpu_seconds_p95']:.3f} s, "
                          f"latency {d['latency_seconds']['total']:.3f} s, "
                          f"stages {({k: round(v, 3) for k, v in d['stage_median_seconds'].items()})}, "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
            if name in args.quality.split(","):
                options = ConversionOptions(rms_mix_rate=1.0, f0_method=args.f0_method)
                offline = converter.convert(speech, 16000, options).audio
                for preset in args.presets.split(","):
                    for lookahead in [float(v) for v in args.lookaheads.split(",") if v]:
                        settings = StreamSettings(**{**PRESETS[preset].__dict__, "lookahead": lookahead})
                        streamed, _ = stream_audio(StreamingConverter(converter, options, settings=settings), speech)
                        corr = audio_diff(streamed[: len(offline)], offline).spec_corr
                        results["quality"].append({"voice": name, "preset": preset, "lookahead": lookahead,
                                                   "f0_method": args.f0_method,
                                                   "rms_mix_rate": 1.0, "spec_corr": corr})
                        if args.out:
                            args.out.write_text(json.dumps(results, indent=2))
                        print(f"{name} {preset} {args.f0_method} lookahead {lookahead:g} s: streamed vs file "
                              f"spectrogram correlation {corr:.4f}", flush=True)
    results["load_after"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
