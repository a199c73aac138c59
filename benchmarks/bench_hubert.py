"""HuBERT/ContentVec for N seconds of speech: MLX per stage, and the PyTorch reference on the same weights.

    python benchmarks/bench_hubert.py [--model PATH] [--seconds 30] [--repeats 3] [--dtype float16] \\
        [--ref-python TORCH_VENV/bin/python --rvc PATH/TO/RVC-WebUI] [--json]

Without ``--model``, full-size HuBERT-base weights are drawn at random and written as a Hugging Face
directory (``model.safetensors`` with ``parametrizations.weight.original0/1``, as RVC's
``assets/hubert_base``); with it, any of the three forms (fairseq ``.pt``, an HF directory). MLX
reads the model through ``mlx-rvc import`` (stored as ``--dtype``, always computed in float32);
the reference's own ``infer.hubert`` loads the HF directory (a fairseq file is first written out
as one) in a subprocess of ``--ref-python`` — mlx-rvc never imports torch.

The two never run at the same time but take turns, one MLX run then one reference run, so a
machine whose load drifts slows both alike; the best of ``--repeats`` turns is reported. Also
reported: the relative RMS difference of the v1 and v2 features from the reference's (the parity
cost of float16 storage shows here), and peak resident memory of both processes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

import mlx_rvc  # noqa: F401  (installs the fast BLAS before MLX loads)
import mlx.core as mx
from mlx_rvc.bench import speech_like
from mlx_rvc.forms import cpu_hubert
from mlx_rvc.importer import import_model, read_source
from mlx_rvc.metrics import array_diff
from mlx_rvc.models import hubert

# The reference, kept alive between turns: loads the model, answers "v1"/"v2" lines with seconds.
REFERENCE = """
import json, os, resource, sys, time
import numpy as np
rvc, model_dir, audio, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, rvc); os.chdir(rvc)
import torch
torch.set_num_threads(threads)
from functools import partial
from pathlib import Path
import infer.hubert as H
H.HUBERT_MODEL_PATH = Path(model_dir)
model = H.load_hubert_model("cpu", is_half=False)
x = torch.from_numpy(np.load(audio))[None]
with torch.no_grad():
    for version in ("v1", "v2"):
        np.save(f"{audio}.{version}.npy", H.extract_hubert_features(model, x, version)[0].numpy())
    print("ready", flush=True)
    for line in sys.stdin:
        version = line.strip()
        t0 = time.perf_counter()
        H.extract_hubert_features(model, x, version)
        seconds = time.perf_counter() - t0
        print(json.dumps({"seconds": seconds, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}),
              flush=True)
"""


def export_hf(directory: Path, cfg: hubert.HubertConfig, weights: dict[str, np.ndarray]) -> Path:
    """Sanitised (MLX-layout) weights -> a Hugging Face directory the reference loads.

    The inverse of :func:`mlx_rvc.models.hubert.sanitize`: convolutions back to (out, in, K), the
    positional kernel back to a weight-normed grouped conv with g = ‖w‖ over (out, in) per tap
    (transformers' ``weight_norm(dim=2)``), so that g·v/‖v‖ gives w again.
    """
    from safetensors.numpy import save_file

    state: dict[str, np.ndarray] = {}
    for key, w in weights.items():
        w = np.asarray(w, np.float32)
        if key == "encoder.pos_conv_embed.conv.weight":
            k, g, c_in, c_out = w.shape  # (K, groups, in_g, out_g) -> torch (groups·out_g, in_g, K)
            w = w.transpose(1, 3, 2, 0).reshape(g * c_out, c_in, k)
            base = "encoder.pos_conv_embed.conv.parametrizations.weight."
            state[base + "original0"] = np.sqrt(np.sum(w.astype(np.float64) ** 2, axis=(0, 1), keepdims=True)).astype(np.float32)
            state[base + "original1"] = np.ascontiguousarray(w)
            continue
        if w.ndim == 3:  # feature-extractor conv (out, K, in) -> (out, in, K)
            w = w.transpose(0, 2, 1)
        state[key] = np.ascontiguousarray(w)
    state["masked_spec_embed"] = np.zeros(cfg.hidden_size, np.float32)  # training-only, present in real files
    config = {
        "model_type": "hubert", "architectures": ["HubertModelWithFinalProj"], "torch_dtype": "float32",
        "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads, "intermediate_size": cfg.intermediate_size,
        "conv_dim": list(cfg.conv_dim), "conv_kernel": list(cfg.conv_kernel), "conv_stride": list(cfg.conv_stride),
        "num_feat_extract_layers": len(cfg.conv_dim), "conv_bias": cfg.conv_bias,
        "num_conv_pos_embeddings": cfg.num_conv_pos_embeddings,
        "num_conv_pos_embedding_groups": cfg.num_conv_pos_embedding_groups,
        "layer_norm_eps": cfg.layer_norm_eps, "classifier_proj_size": cfg.final_proj_size,
        "feat_extract_norm": "group", "do_stable_layer_norm": False, "hidden_act": "gelu",
        "feat_extract_activation": "gelu",
    }
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": False, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
        "padding_side": "right", "padding_value": 0, "return_attention_mask": False, "sampling_rate": 16000}))
    return directory


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def mlx_stages(model: hubert.HubertModel, x: np.ndarray) -> dict[str, float]:
    """One timed pass per stage on the path the model takes here (numpy on the CPU, else MLX)."""
    enc = model.encoder
    if hubert.use_numpy():
        def run(fn, *args):
            return fn(*args)

        fe = partial(cpu_hubert.feature_extractor, model.feature_extractor)
        proj = partial(cpu_hubert.feature_projection, model.feature_projection)
        pos = partial(cpu_hubert.positional_conv, enc.pos_conv_embed.conv)
        layers = [partial(cpu_hubert.encoder_layer, layer) for layer in enc.layers]
        wav = x[None]
    else:
        def run(fn, *args):
            y = fn(*args)
            mx.eval(y)
            return y

        fe, proj, pos, layers = model.feature_extractor, model.feature_projection, enc.pos_conv_embed, enc.layers
        wav = mx.array(x[None])
    out: dict[str, float] = {}
    feats = run(fe, wav)
    out["feature_extractor"] = timed(lambda: run(fe, wav))
    p = run(proj, feats)
    out["projection"] = timed(lambda: run(proj, feats))
    out["pos_conv"] = timed(lambda: run(pos, p))
    h = model(wav, up_to_layer=0)[0]

    def encoder_layers():
        y = h
        for layer in layers:
            y = run(layer, y)

    out["encoder_layers"] = timed(encoder_layers)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="fairseq .pt or HF directory (default: random HuBERT-base)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="MLX weight storage")
    ap.add_argument("--seed", type=int, default=0, help="random weights' seed (without --model)")
    ap.add_argument("--ref-python", type=Path, help="a Python with torch to run the reference")
    ap.add_argument("--rvc", type=Path, help="RVC WebUI checkout (with --ref-python)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the reference")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.ref_python and not args.rvc:
        ap.error("--ref-python needs --rvc")

    x = speech_like(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = args.model
        if source is None:
            source = export_hf(tmp / "hubert_random", hubert.BASE, hubert.random_weights(hubert.BASE, seed=args.seed))
        t0 = time.perf_counter()
        model_dir = import_model(source, out=tmp / "imported", dtype=args.dtype).path
        import_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = hubert.load(model_dir)
        load_seconds = time.perf_counter() - t0
        ref_dir = source if source.is_dir() else None
        if args.ref_python and ref_dir is None:  # the reference reads only the Hugging Face form
            read = read_source(source)
            config, weights = hubert.convert_checkpoint(read.obj, name=source.name)
            ref_dir = export_hf(tmp / "hubert_ref", hubert.HubertConfig.from_dict(config), weights)

        result: dict = {"seconds_of_audio": args.seconds, "dtype": args.dtype, "config": model.cfg.to_dict(),
                        "model": str(args.model) if args.model else f"random HuBERT-base (seed {args.seed})",
                        "mlx_import_seconds": import_seconds, "mlx_load_seconds": load_seconds}
        v1 = model.features(x, version="v1")  # warm-up, and the features compared below
        v2 = model.features(x, version="v2")
        mlx_runs: dict[str, list[float]] = {"v1": [], "v2": []}
        ref_runs: dict[str, list[float]] = {"v1": [], "v2": []}
        stage_runs: list[dict[str, float]] = []
        ref = None
        audio = tmp / "x.npy"
        if args.ref_python:
            np.save(audio, x)
            ref = subprocess.Popen([str(args.ref_python), "-c", REFERENCE, str(args.rvc.resolve()),
                                    str(Path(ref_dir).resolve()), str(audio), str(args.threads)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if ref.stdout.readline().strip() != "ready":
                ref.kill()
                sys.exit(f"reference failed:\n{ref.stderr.read()[-2000:]}")
        ref_peak = 0
        try:
            for _ in range(args.repeats):
                for version in ("v2", "v1"):
                    mlx_runs[version].append(timed(lambda: model.features(x, version=version)))
                    if ref is not None:
                        ref.stdin.write(version + "\n")
                        ref.stdin.flush()
                        reply = json.loads(ref.stdout.readline())
                        ref_runs[version].append(reply["seconds"])
                        ref_peak = reply["peak_rss_bytes"]
                stage_runs.append(mlx_stages(model, x))
        finally:
            if ref is not None:
                ref.stdin.close()
                ref.wait(timeout=60)

        result["mlx"] = {f"total_{v}": min(t) for v, t in mlx_runs.items()}
        result["mlx"].update({k: min(r[k] for r in stage_runs) for k in stage_runs[0]})
        result["mlx_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if ref is not None:
            result["reference"] = {f"total_{v}": min(t) for v, t in ref_runs.items()}
            result["reference_peak_rss_bytes"] = ref_peak
            result["ratio_mlx_over_reference"] = {v: min(mlx_runs[v]) / min(ref_runs[v]) for v in mlx_runs}
            result["parity_rel_rms"] = {
                "v1": array_diff(v1, np.load(f"{audio}.v1.npy")).rel_rms,
                "v2": array_diff(v2, np.load(f"{audio}.v2.npy")).rel_rms,
            }

    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"HuBERT, {args.seconds:g} s of speech, weights stored {args.dtype}, best of {args.repeats} (seconds)")
    for stage, t in result["mlx"].items():
        print(f"  mlx {stage:<18} {t:8.3f}")
    if "reference" in result:
        for stage, t in result["reference"].items():
            print(f"  ref {stage:<18} {t:8.3f}")
        r, p = result["ratio_mlx_over_reference"], result["parity_rel_rms"]
        print(f"  mlx / reference: v2 {r['v2']:.2f}x, v1 {r['v1']:.2f}x; "
              f"features rel RMS from the reference: v1 {p['v1']:.2e}, v2 {p['v2']:.2e}")
        print(f"  peak RSS: mlx {result['mlx_peak_rss_bytes'] / 2**30:.2f} GiB, "
              f"reference {result['reference_peak_rss_bytes'] / 2**30:.2f} GiB")
    else:
        print(f"  peak RSS {result['mlx_peak_rss_bytes'] / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
