"""Parity runner for content-encoder fixtures (``hubert.npz``, ``hubert_768.npz``).

Fixture arrays: ``conv_features`` in the reference's (B, C, T) layout, the others (B, T, C) or
(T, C); the runner produces each stage under the same names and layouts.
"""

from __future__ import annotations

import numpy as np

from ..importer import convert, read_source
from ..models import hubert
from . import Fixture, Tolerance

# Each stage is a few float32 matmuls/norms deep on inputs of unit scale: rounding gives
# ~1e-6 relative; 1e-4 leaves room for accumulation order while catching any layout slip.
TOLERANCES: dict[str, Tolerance] = {"*": Tolerance(rel_rms=1e-4, corr=0.99999)}


def run(fixture: Fixture) -> dict[str, np.ndarray]:
    name = fixture.entry.get("model") or ("models/hubert_base_768" if "768" in fixture.name else "models/hubert_base")
    config, weights = convert(read_source(fixture.resolve(name)))
    model = hubert.build(hubert.HubertConfig.from_dict(config), weights)
    wav = fixture["input_16k"].astype(np.float32)[None]
    trace: dict = {}
    states = model(wav, trace=trace)
    out = {
        "conv_features": np.asarray(trace["conv_features"]).transpose(0, 2, 1),
        "projected_features": np.asarray(trace["projected_features"]),
        "pos_conv_out": np.asarray(trace["pos_conv_out"]),
    }
    stacked = np.stack([np.asarray(s[0]) for s in states])
    if "hidden_states" in fixture.arrays:
        out["hidden_states"] = stacked
    out["hidden_states0"] = stacked[0]
    n = model.cfg.num_hidden_layers
    out[f"feats_v2_layer{n}"] = stacked[-1]
    if model.cfg.final_proj_size and n >= hubert.V1_LAYER:
        out["feats_v1_layer9_final_proj"] = np.asarray(model.project(states[hubert.V1_LAYER])[0])
    return out
