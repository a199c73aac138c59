"""The HuBERT/ContentVec encoder: reference parity per stage, and the three checkpoint forms agree."""

from __future__ import annotations

import json
import pickle
import zipfile

import mlx.core as mx
import numpy as np
import pytest

from mlx_rvc import artifact
from mlx_rvc import forms
from mlx_rvc.forms import cpu_hubert
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
def test_every_stage_matches_reference(name, form):
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


# ----------------------------------------------------------------------------- the two paths
# The CPU form runs the model in numpy (hubert.use_numpy); the GPU form runs the MLX code.
# Both must compute the same thing, stage by stage.


@pytest.fixture
def mlx_path():
    with forms.use("gpu"):
        yield


def _stages(model, wav):
    trace: dict = {}
    states = model(wav, trace=trace)
    out = {k: np.asarray(v) for k, v in trace.items()}
    out.update({f"h{i}": np.asarray(s) for i, s in enumerate(states)})
    return out


def _rel_rms(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))


@pytest.mark.parametrize("source", ["hubert_base", "hubert_base_768"])
def test_numpy_and_mlx_paths_agree_stage_by_stage(source, audio):
    config, weights = convert(read_source(MODELS / source))
    model = hubert.build(hubert.HubertConfig.from_dict(config), weights)
    wav = audio[None].astype(np.float32)
    with forms.use("cpu"):
        assert hubert.use_numpy()
        fast = _stages(model, wav)
    with forms.use("gpu"):
        assert not hubert.use_numpy()
        slow = _stages(model, wav)
    assert fast.keys() == slow.keys()
    for key in fast:
        assert fast[key].shape == slow[key].shape, key
        assert _rel_rms(fast[key], slow[key]) < 2e-6, key


def test_mlx_path_matches_reference(mlx_path):
    report = run_parity(FIXTURES / "hubert.npz")
    assert report.passed, [c.as_dict() for c in report.checks if not c.passed]


def test_gelu_numpy_is_exact_erf_gelu():
    from scipy.special import erf

    rng = np.random.default_rng(0)
    # enough rows for every thread to get several pieces, and the tails where erf saturates
    x = (rng.standard_normal((700, 512)) * 3).astype(np.float32)
    x[0, :8] = [0.0, -0.0, 1e-30, -1e-30, 9.0, -9.0, 40.0, -40.0]
    bias = rng.standard_normal(512).astype(np.float32)
    z = x.astype(np.float64) + bias
    expected = z * 0.5 * (1 + erf(z / np.sqrt(2)))
    got = cpu_hubert.gelu_numpy(x, bias)
    assert np.abs(got - expected).max() < 1e-6 * max(1.0, np.abs(z).max() / 10)
    inplace = x.copy()
    assert cpu_hubert.gelu_numpy(inplace, bias, inplace=True) is inplace
    np.testing.assert_array_equal(inplace, got)
    np.testing.assert_array_equal(cpu_hubert.gelu_numpy(x[:3, :5]), cpu_hubert.gelu_numpy(x)[:3, :5])


def test_softmax_without_shift_equals_shifted(monkeypatch):
    cfg = hubert.HubertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32,
                              conv_dim=(16,) * 2, conv_kernel=(10, 3), conv_stride=(5, 2), conv_bias=False,
                              num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    weights = hubert.random_weights(cfg, seed=3)
    model = hubert.build(cfg, weights)
    attn = model.encoder.layers[0].attention
    x = np.random.default_rng(1).standard_normal((1, 300, 64)).astype(np.float32)
    unshifted = cpu_hubert.attention(attn, x)
    monkeypatch.setattr(cpu_hubert, "SAFE_LOGIT", -1.0)  # always subtract the row max
    shifted = cpu_hubert.attention(attn, x)
    assert _rel_rms(unshifted, shifted) < 1e-6
    # logits far beyond exp's range take the shifted path and stay finite
    monkeypatch.undo()
    big = x * 300
    out = cpu_hubert.attention(attn, big)
    assert np.isfinite(out).all()
    with forms.use("gpu"):
        assert _rel_rms(out, np.asarray(attn(mx.array(big)))) < 1e-5


@pytest.mark.parametrize("path", ["numpy", "mlx"])
def test_feature_extractor_blocks_join_seamlessly(path, models, audio, monkeypatch, form):
    model = models["hubert_base"][1]
    fe = model.feature_extractor
    wav = audio[None].astype(np.float32)
    run = (lambda w: cpu_hubert.feature_extractor(fe, w)) if path == "numpy" else (lambda w: np.asarray(fe(mx.array(w))))
    whole = run(wav)
    monkeypatch.setattr(hubert.FeatureExtractor, "BLOCK_FRAMES", 7)  # 199 frames in 29 blocks
    # equal up to BLAS's size-dependent summation order (a few ULPs); a seam error would be O(1)
    assert _rel_rms(run(wav), whole) < 1e-6
    assert whole.shape == (1, 199, 32)


@pytest.mark.parametrize("kernel", [128, 33])
def test_positional_conv_fft_equals_direct(kernel):
    cfg = hubert.HubertConfig(hidden_size=96, num_hidden_layers=0, num_attention_heads=4, intermediate_size=32,
                              conv_dim=(16,), conv_kernel=(10,), conv_stride=(5,), conv_bias=False,
                              num_conv_pos_embeddings=kernel, num_conv_pos_embedding_groups=16, final_proj_size=None)
    conv = hubert.build(cfg, hubert.random_weights(cfg, seed=2)).encoder.pos_conv_embed.conv
    for frames in (5, 150, 700):  # shorter than the kernel, and several overlap-save blocks
        x = np.random.default_rng(frames).standard_normal((1, frames, 96)).astype(np.float32)
        direct = np.asarray(conv(mx.array(x)))
        assert direct.shape == (1, frames, 96)  # 'same' length: an even kernel's extra frame is dropped
        assert _rel_rms(cpu_hubert.positional_conv(conv, x), direct) < 1e-6


# ----------------------------------------------------------------------------- malformed encoders


def _hf_copy(tmp_path, edit=None, weights=None):
    d = tmp_path / "enc"
    d.mkdir()
    cfg = json.loads((MODELS / "hubert_base" / "config.json").read_text())
    if edit:
        edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    src = MODELS / "hubert_base_safetensors" / "model.safetensors"
    (d / "model.safetensors").write_bytes(weights(src.read_bytes()) if weights else src.read_bytes())
    return d


@pytest.mark.parametrize("case", ["truncated_pt", "truncated_safetensors", "conv_pos_batch_norm",
                                  "pre_ln", "missing_config_field", "not_hubert"])
def test_malformed_encoder_is_refused_with_one_line(case, tmp_path):
    from typer.testing import CliRunner

    from mlx_rvc.cli import app

    if case == "truncated_pt":
        src = tmp_path / "hubert_base.pt"
        src.write_bytes((MODELS / "hubert_base.pt").read_bytes()[:50_000])
    elif case == "truncated_safetensors":
        src = _hf_copy(tmp_path, weights=lambda b: b[: len(b) // 2])
    elif case == "conv_pos_batch_norm":
        src = _hf_copy(tmp_path, lambda c: c.update(conv_pos_batch_norm=True))
    elif case == "pre_ln":
        src = _hf_copy(tmp_path, lambda c: c.update(do_stable_layer_norm=True))
    elif case == "missing_config_field":
        src = _hf_copy(tmp_path, lambda c: c.pop("num_conv_pos_embedding_groups"))
    else:
        src = _hf_copy(tmp_path, lambda c: c.update(model_type="wav2vec2"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["import", str(src), "--out", str(out)], env={"COLUMNS": "1000"})
    assert result.exit_code != 0
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert not out.exists()


# ----------------------------------------------------------------------------- full size


@pytest.mark.fullsize
def test_fullsize_every_form_matches_reference(fullsize_dir):
    """Full-size HuBERT-base fixtures (benchmarks/reference/make_hubert_fixtures.py or make_fullsize.py)."""
    listed = json.loads((fullsize_dir / "fixtures.json").read_text())["fixtures"]
    names = sorted(n for n in listed if n.startswith("hubert"))
    if not names:
        pytest.skip(f"no HuBERT fixtures in {fullsize_dir}")
    for name in names:
        report = run_parity(fullsize_dir / name)
        assert report.passed, (name, [c.as_dict() for c in report.checks if not c.passed])
        for c in report.checks:
            if c.key.startswith("feats_"):
                assert c.diff.rel_rms <= 1e-4, (name, c.key, c.diff.rel_rms)


def test_numpy_threads_survive_fork():
    """A forked child (multiprocessing's default on Linux) inherits the pool object but not its threads."""
    import multiprocessing as mp

    x = np.random.default_rng(0).standard_normal((4000, 512)).astype(np.float32)
    expected = cpu_hubert.gelu_numpy(x)  # the parent's pool exists now
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(cpu_hubert.gelu_numpy, (x,)).get(timeout=60)
    np.testing.assert_array_equal(got, expected)
