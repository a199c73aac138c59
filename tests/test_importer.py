"""``mlx-rvc import`` for voices: named config, strict shapes, atomic and idempotent writes."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest

from mlx_rvc import artifact
from mlx_rvc.errors import ModelConfigError, TrainingCheckpointError, UnknownModelError
from mlx_rvc.importer import convert, import_model, read_source
from mlx_rvc.models import synthesizer as synth
from mlx_rvc.safety import OutputExistsError

from .conftest import FIXTURES, MODELS

WEIGHTS = MODELS / "weights"


def _manifest(name: str) -> dict:
    return json.loads((MODELS / "manifest.json").read_text())["synthesizers"][name]


@pytest.mark.parametrize("path", sorted(WEIGHTS.glob("*.pth")), ids=lambda p: p.stem)
def test_config_decoded_into_named_fields(path, tmp_path):
    result = import_model(path, out=tmp_path / path.stem)
    config = artifact.read_config(result.path)
    ref = _manifest(path.name)
    raw = ref["config"]
    assert config["model_type"] == "rvc_voice"
    assert config["version"] == ref["version"]
    assert config["f0"] == bool(ref["f0"])
    assert config["sample_rate"] == raw[-1]
    assert config["upsample_rates"] == raw[12] and config["upsample_kernel_sizes"] == raw[14]
    assert config["inter_channels"] == raw[2] and config["gin_channels"] == raw[16]
    assert config["spk_embed_dim"] == 109
    assert config["phone_channels"] == (256 if ref["version"] == "v1" else 768)
    assert config["source_name"] == path.name
    assert config["source_sha256"] == ref.get("sha256", config["source_sha256"])
    weights = artifact.read_weights(result.path)
    assert not any(k.startswith("enc_q.") or k.endswith(("weight_g", "weight_v")) for k in weights)
    synth.load(result.path)  # strict load succeeds


def test_float32_store_is_exact_and_float16_store_rounds_once(tmp_path):
    src = WEIGHTS / "v2_48k_f0.pth"
    _, reference = convert(read_source(src))
    f32 = artifact.read_weights(import_model(src, out=tmp_path / "f32").path)
    f16 = artifact.read_weights(import_model(src, out=tmp_path / "f16", dtype="float16").path)
    assert set(f32) == set(reference) == set(f16)
    for k, ref in reference.items():
        np.testing.assert_array_equal(f32[k], ref)
        assert f16[k].dtype == np.float16
        # one rounding to float16: relative error ≤ 2^-11 (half an ULP), plus subnormals near 0
        np.testing.assert_allclose(f16[k].astype(np.float32), ref, rtol=2**-11, atol=6e-8)
    assert artifact.read_config(tmp_path / "f16")["dtype"] == "float16"


def test_reimport_is_idempotent(tmp_path):
    src = WEIGHTS / "v1_40k_f0.pth"
    first = import_model(src, out=tmp_path / "v")
    stamp = (first.path / artifact.WEIGHTS_NAME).stat().st_mtime_ns
    second = import_model(src, out=tmp_path / "v")
    assert not first.unchanged and second.unchanged
    assert (first.path / artifact.WEIGHTS_NAME).stat().st_mtime_ns == stamp
    with pytest.raises(OutputExistsError, match="--overwrite"):  # another import is not silently replaced
        import_model(src, out=tmp_path / "v", dtype="float16")
    third = import_model(src, out=tmp_path / "v", dtype="float16", overwrite=True)
    assert not third.unchanged


def test_library_name_and_index(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_RVC_HOME", str(tmp_path / "home"))
    index = FIXTURES / "added_IVF10_Flat_nprobe_1_oracle_e2e_v2_48k_f0_rmvpe_v2.index"
    result = import_model(WEIGHTS / "v2_48k_f0.pth", name="alice", index=index)
    assert result.path == tmp_path / "home" / "voices" / "alice"
    assert (result.path / "voice.index").read_bytes() == index.read_bytes()
    assert artifact.read_config(result.path)["index_sha256"] == artifact.sha256_file(index)


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    import safetensors.numpy

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        import_model(WEIGHTS / "v1_32k_f0.pth", out=tmp_path / "voice")
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_previous_model(tmp_path, monkeypatch):
    import safetensors.numpy

    good = import_model(WEIGHTS / "v1_32k_f0.pth", out=tmp_path / "voice").path
    before = (good / artifact.WEIGHTS_NAME).read_bytes()
    monkeypatch.setattr(safetensors.numpy, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError("io")))
    with pytest.raises(OSError):
        import_model(WEIGHTS / "v1_32k_f0.pth", out=tmp_path / "voice", dtype="float16", overwrite=True)
    assert (good / artifact.WEIGHTS_NAME).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voice"]


def _rewrite_pickle(tmp_path, name, transform):
    """A copy of a real voice whose object pickle is replaced by transform(original object)."""
    from mlx_rvc.checkpoint import read_checkpoint

    obj = transform(read_checkpoint(WEIGHTS / "v1_40k_f0.pth"))
    path = tmp_path / name
    # tensors become plain lists: recognition and config checks do not need real storages
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
    return path


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def test_training_checkpoint_is_refused(tmp_path):
    path = _rewrite_pickle(tmp_path, "G_2333.pth", lambda c: {
        "model": {"enc_p.emb_phone.weight": [[0.0]]}, "optimizer": {"state": {}}, "learning_rate": 1e-4,
        "iteration": 200})
    with pytest.raises(TrainingCheckpointError, match="training checkpoint"):
        import_model(path, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_kinds_are_refused(tmp_path):
    path = _rewrite_pickle(tmp_path, "other.pth", lambda c: {"layer.weight": [1.0, 2.0]})
    with pytest.raises(UnknownModelError, match="not an RVC voice"):
        import_model(path, out=tmp_path / "o1")
    path = _rewrite_pickle(tmp_path, "refinegan.pth", lambda c: {**_plain(c), "vocoder": "RefineGAN"})
    with pytest.raises(UnknownModelError, match="RefineGAN"):
        import_model(path, out=tmp_path / "o2")


def test_config_that_contradicts_weights_is_refused(tmp_path):
    def wrong_rates(c):
        c = dict(c)
        c["config"] = list(c["config"])
        c["config"][12] = [8, 10, 2, 2]  # other upsample rates: ups weights no longer fit
        return c

    from mlx_rvc.checkpoint import read_checkpoint

    cpt = wrong_rates(read_checkpoint(WEIGHTS / "v1_40k_f0.pth"))
    with pytest.raises(ModelConfigError, match="samples per frame"):
        synth.convert_checkpoint(cpt, name="bad.pth")
    cpt = read_checkpoint(WEIGHTS / "v1_40k_f0.pth")
    cpt["config"][14] = [20, 16, 4, 4]  # kernel sizes that the ups weights do not have
    with pytest.raises(ModelConfigError, match="kernel"):
        synth.convert_checkpoint(cpt, name="bad.pth")
    cpt = read_checkpoint(WEIGHTS / "v1_40k_f0.pth")
    cpt["config"][2] = 24  # inter_channels
    with pytest.raises(ModelConfigError, match="do not match"):
        synth.convert_checkpoint(cpt, name="bad.pth")
    cpt = read_checkpoint(WEIGHTS / "v1_40k_f0.pth")
    cpt["version"] = "v2"
    with pytest.raises(ModelConfigError, match="768-d"):
        synth.convert_checkpoint(cpt, name="bad.pth")
    cpt = read_checkpoint(WEIGHTS / "v1_40k_f0.pth")
    del cpt["weight"]["dec.conv_post.weight"]
    with pytest.raises(ModelConfigError, match="missing dec.conv_post.weight"):
        synth.convert_checkpoint(cpt, name="bad.pth")
