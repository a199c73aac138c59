"""The HuBERT/ContentVec encoder: reference parity per stage, and the three checkpoint forms agree."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest

from mlx_rvc import artifact
from mlx_rvc.errors import CheckpointError, ModelConfigError
from mlx_rvc.importer import convert, import_model, read_source
from mlx_rvc.models import hubert
from mlx_rvc.parity import run_parity

from .conftest import FIXTURES, MODELS

FORMS = ["hubert_base.pt", "hubert_base", "hubert_base_safetensors"]
# Measured ≤ 1.2e-5 relative RMS per stage (float32 rounding through GELU/GroupNorm/attention);
# a wrong layout, tap or norm axis gives O(1).
STAGE_REL_RMS = 5e-5


@pytest.mark.parametrize("name", ["hubert.npz", "hubert_768.npz"])
def test_every_stage_matches_reference(name):
    report = run_parity(FIXTURES / name)
    assert report.passed, [c.as_dict() for c in report.checks if not c.passed]
    keys = {c.key for c in report.checks}
    assert {"conv_features", "projected_features", "pos_conv_out"} <= keys
    for c in report.checks:
        assert c.diff.rel_rms <= STAGE_REL_RMS, (c.key, c.diff.rel_rms)


@pytest.fixture(scope="module")
def audio():
    return np.load(FIXTURES / "hubert.npz")["input_16k"]


@pytest.fixture(scope="module")
def models():
    out = {}
    for form in FORMS:
        config, weights = convert(read_source(MODELS / form))
        out[form] = (config, hubert.build(hubert.HubertConfig.from_dict(config), weights))
    return out


def test_three_forms_give_the_same_config_and_features(models, audio):
    ref = np.load(FIXTURES / "hubert.npz")
    configs = [{k: v for k, v in c.items() if k != "source_format"} for c, _ in models.values()]
    assert configs[0] == configs[1] == configs[2]
    assert models["hubert_base.pt"][0]["source_format"] == "fairseq"
    v1 = [m.features(audio, version="v1") for _, m in models.values()]
    v2 = [m.features(audio, version="v2") for _, m in models.values()]
    for a in v1[1:]:
        # fp16 fairseq weights equal the fp32 HF ones exactly; only weight-norm folding order differs
        np.testing.assert_allclose(a, v1[0], rtol=0, atol=1e-5)
    for a in v2[1:]:
        np.testing.assert_allclose(a, v2[0], rtol=0, atol=1e-5)
    assert v1[0].shape == (199, 256) and v2[0].shape == (199, 32)
    np.testing.assert_allclose(v1[0], ref["feats_v1_layer9_final_proj"], atol=1e-4)


def test_import_writes_model_directory_and_loads(tmp_path, audio):
    result = import_model(MODELS / "hubert_base.pt", out=tmp_path / "enc")
    config = artifact.read_config(result.path)
    assert config["model_type"] == "hubert" and config["hidden_size"] == 32 and config["num_hidden_layers"] == 12
    assert config["conv_stride"] == [5, 2, 2, 2, 2, 2, 2]
    model = hubert.load(result.path)
    assert model.features(audio, version="v2").shape == (199, 32)
    with pytest.raises(ValueError, match="v1"):
        hubert.load(import_model(MODELS / "hubert_base_768", out=tmp_path / "e768").path).features(audio, version="v1")


def test_short_input_is_refused(models):
    with pytest.raises(ValueError, match="receptive field"):
        models["hubert_base"][1].features(np.zeros(300, np.float32), version="v2")


def test_conv_feature_layers_are_parsed_without_eval():
    layers = hubert._parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")
    assert layers == [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    for hostile in ["__import__('os').system('true')", "[(1,2,3)] * (10**9)", "open('x')"]:
        with pytest.raises(ModelConfigError):
            hubert._parse_conv_layers(hostile)


def test_hostile_fairseq_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("true",))

    path = tmp_path / "hubert_base.pt"
    with zipfile.ZipFile(MODELS / "hubert_base.pt") as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = pickle.dumps({"model": {}, "cfg": Evil()}, protocol=2)
            zout.writestr(info, data)
    with pytest.raises(CheckpointError, match="forbidden global"):
        import_model(path, out=tmp_path / "out")


def test_config_that_contradicts_weights_is_refused(tmp_path):
    bad = tmp_path / "hf"
    bad.mkdir()
    cfg = json.loads((MODELS / "hubert_base" / "config.json").read_text())
    cfg["num_hidden_layers"] = 13
    (bad / "config.json").write_text(json.dumps(cfg))
    (bad / "model.safetensors").write_bytes((MODELS / "hubert_base_safetensors" / "model.safetensors").read_bytes())
    with pytest.raises(ModelConfigError, match="missing encoder.layers.12"):
        import_model(bad, out=tmp_path / "out")
