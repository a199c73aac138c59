"""Full-size HuBERT fixtures from the PyTorch reference: every stage, for each of the three file forms.

Builds full-size random HuBERT-base weights (768 hidden, 12 layers, 12 heads, 3072 FFN, 7×512
conv) in the three forms users hold, with ``make_fullsize.make_hubert`` (the model building and
randomisation are shared with the other full-size fixtures):

* ``models/hubert_base/`` — Hugging Face directory, ``model.safetensors`` with
  ``parametrizations.weight.original0/1`` (what RVC WebUI 2026 loads);
* ``models/hubert_base_bin/`` — the same with ``pytorch_model.bin`` and legacy ``weight_g/weight_v``;
* ``models/hubert_base.pt`` — the classic fairseq checkpoint (float16, fairseq names, ``cfg``
  dicts), re-saved here so that, like the released file, its ``task_state`` pickles a
  ``fairseq.data.dictionary.Dictionary`` object that safe loaders must read without running it.

Runs the reference's own ``infer.hubert`` (transformers) on 30 s of speech and stores every
stage — conv features, projection, positional conv, all 13 hidden states, v1 and v2 features — in
``hubert_full_hf.npz``, listed in ``fixtures.json`` once per form (``hubert_full_{bin,fairseq}.npz``
link to it), so ``mlx-rvc parity OUT/hubert_full_*.npz`` checks each form against
the same reference arrays. The two HF forms are run through the reference too and must agree
bit for bit (the 2026 reference cannot load the fairseq form; its weights are the float16
rounding of the same values, which the HF forms hold exactly).

    TORCH_VENV/bin/python benchmarks/reference/make_hubert_fixtures.py --rvc PATH/TO/RVC-WebUI \\
        --out FULLSIZE_DIR/hubert [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np

from make_fullsize import TORCH_THREADS, make_hubert, speech

STAGES_NAME = "hubert_full_hf.npz"  # the arrays; the other forms' fixture names link to it
FORMS = {  # fixture name -> model path relative to OUT
    "hubert_full_hf.npz": "models/hubert_base",
    "hubert_full_bin.npz": "models/hubert_base_bin",
    "hubert_full_fairseq.npz": "models/hubert_base.pt",
}


def add_fairseq_dictionary(torch, path: Path) -> None:
    """Re-save a fairseq checkpoint with ``task_state = {"dictionaries": [Dictionary]}``.

    The class is registered as ``fairseq.data.dictionary.Dictionary`` only for pickling, so the
    file refers to fairseq's class by name exactly as the released ``hubert_base.pt`` does.
    """
    names = ["fairseq", "fairseq.data", "fairseq.data.dictionary"]
    modules = {name: sys.modules.get(name) for name in names}
    for name in names:
        sys.modules[name] = types.ModuleType(name)

    class Dictionary:
        pass

    Dictionary.__module__ = "fairseq.data.dictionary"
    Dictionary.__qualname__ = "Dictionary"
    sys.modules["fairseq.data.dictionary"].Dictionary = Dictionary
    try:
        d = Dictionary()
        d.bos_word, d.unk_word, d.pad_word, d.eos_word = "<s>", "<unk>", "<pad>", "</s>"
        d.symbols = ["<s>", "<pad>", "</s>", "<unk>"] + [str(i) for i in range(500)]
        d.count = [1] * len(d.symbols)
        d.indices = {s: i for i, s in enumerate(d.symbols)}
        d.bos_index, d.pad_index, d.eos_index, d.unk_index, d.nspecial = 0, 1, 2, 3, 4
        ckpt = torch.load(path, weights_only=False)
        ckpt["task_state"] = {"dictionaries": [d]}
        torch.save(ckpt, path)
    finally:
        for name, module in modules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def reference_stages(torch, H, model_dir: Path, x: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
    """Every stage of the reference on one HF directory, and the warm seconds of a v2 extraction."""
    H.HUBERT_MODEL_PATH = model_dir
    model = H.load_hubert_model("cpu", is_half=False)
    captured: dict[str, np.ndarray] = {}

    def keep(name):
        def hook(_module, _inputs, output):
            output = output[0] if isinstance(output, tuple) else output
            captured[name] = output.detach().numpy().copy()
        return hook

    handles = [model.feature_extractor.register_forward_hook(keep("conv_features")),
               model.feature_projection.register_forward_hook(keep("projected_features")),
               model.encoder.pos_conv_embed.register_forward_hook(keep("pos_conv_out"))]
    src = torch.from_numpy(x)[None]
    with torch.no_grad():
        out = model(input_values=src, output_hidden_states=True, return_dict=True)
        for h in handles:
            h.remove()
        arrays = {"input_16k": x, **captured,
                  "hidden_states": torch.stack(out.hidden_states)[:, 0].numpy(),
                  "feats_v1_layer9_final_proj": H.extract_hubert_features(model, src, "v1")[0].numpy(),
                  "feats_v2_layer12": H.extract_hubert_features(model, src, "v2")[0].numpy()}
        t0 = time.perf_counter()
        H.extract_hubert_features(model, src, "v2")
        seconds = time.perf_counter() - t0
    return arrays, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rvc", type=Path, required=True, help="RVC WebUI checkout")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()

    rvc = args.rvc.resolve()
    out = args.out.resolve()
    sys.path.insert(0, str(rvc))
    os.chdir(rvc)
    import torch

    torch.set_num_threads(TORCH_THREADS)
    import infer.hubert as H

    out.mkdir(parents=True, exist_ok=True)
    hf = make_hubert(torch, out)  # writes models/hubert_base, models/hubert_base_bin, models/hubert_base.pt
    add_fairseq_dictionary(torch, out / "models" / "hubert_base.pt")
    x = speech(args.seconds, seed=5)
    arrays, seconds = reference_stages(torch, H, hf, x)
    legacy, _ = reference_stages(torch, H, out / "models" / "hubert_base_bin", x)
    for key, value in arrays.items():
        if not np.array_equal(value, legacy[key]):
            sys.exit(f"the weight_g/weight_v form differs from the safetensors form at {key}")
    if (out / STAGES_NAME).is_symlink():
        (out / STAGES_NAME).unlink()
    np.savez_compressed(out / STAGES_NAME, **arrays)
    entries = {}
    for name, model in FORMS.items():
        link = out / name
        if name != STAGES_NAME:
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(STAGES_NAME)
        entries[name] = {
            "producer": "transformers HubertModel(output_hidden_states=True) + infer.hubert.extract_hubert_features"
                        " (stages captured with forward hooks)",
            "model": model, "seconds_of_audio": args.seconds,
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
        }
    meta = {"reference": "RVC WebUI infer/hubert.py", "torch": torch.__version__, "torch_threads": TORCH_THREADS,
            "timings_seconds": {f"hubert_v2 {args.seconds:g}s": round(seconds, 3)}, "fixtures": entries}
    (out / "fixtures.json").write_text(json.dumps(meta, indent=1))
    print(f"wrote {out / STAGES_NAME} ({', '.join(FORMS)}); reference v2 on {args.seconds:g} s: {seconds:.2f} s")


if __name__ == "__main__":
    main()
