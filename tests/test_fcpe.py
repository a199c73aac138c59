"""FCPE on its real trained weights (fcpe_c_v001.pt from the torchfcpe wheel) against torchfcpe 0.0.4.

Goldens: tests/fixtures/pitch.npz (see tests/fixtures/README.md), made by
benchmarks/reference/make_pitch_fixtures.py --excerpts with the reference's own call.
"""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from mlx_rvc import pitch
from mlx_rvc.errors import ModelConfigError, UnknownModelError
from mlx_rvc.importer import import_model, read_source
from mlx_rvc.models import fcpe

from .conftest import FIXTURES

CLIPS = ("speech_x1.8", "singing_high", "speech_x1_snr0")  # high speech, sung vibrato, speech at 0 dB SNR


@pytest.fixture(scope="module")
def golden():
    return np.load(FIXTURES / "pitch.npz")


@pytest.fixture(scope="module")
def model_dir(pitch_weights, tmp_path_factory):
    return import_model(pitch_weights["fcpe_c_v001.pt"], out=tmp_path_factory.mktemp("lib") / "fcpe").path


@pytest.fixture(scope="module")
def model(model_dir):
    return fcpe.load(model_dir)


def audio(golden, name):
    return golden["audio/" + name].astype(np.float32) / 32768


def cents(a, b):
    return np.abs(1200 * np.log2(a / b))


def test_import_recognises_fcpe_by_content(pitch_weights, model_dir):
    assert read_source(pitch_weights["fcpe_c_v001.pt"]).kind == "fcpe"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "fcpe"
    # read from the checkpoint's config_dict, not assumed
    assert (config["n_mels"], config["hidden_dims"], config["n_layers"], config["out_dims"]) == (128, 512, 6, 360)
    assert (config["f0_min"], config["f0_max"], config["hop_size"]) == (32.7, 1975.5, 160)


def test_front_end_matches_torchfcpe(golden):
    mel = fcpe.log_mel(audio(golden, CLIPS[0]), fcpe.FcpeConfig())
    assert mel.shape == golden["fcpe_mel"].shape == (len(golden["audio/" + CLIPS[0]]) // 160 + 1, 128)
    ref = golden["fcpe_mel"]
    # float64 FFT here vs torch's float32 one, whose rounding error is ~1e-7 of a frame's loudest bin
    # (summed over 1024 samples: ~1e-6): compared as mel energies relative to the frame's loudest
    # (measured 1.1e-6), since in the log domain a quiet bin near the 1e-5 floor magnifies it
    err = np.abs(np.exp(mel) - np.exp(ref)) / np.exp(ref).max(axis=1, keepdims=True)
    assert err.max() < 1e-5


@pytest.mark.parametrize("form", ["mlx", "numpy"])
def test_network_matches_torchfcpe(model, golden, form):
    if form == "mlx":
        sal = np.array(model(mx.array(golden["fcpe_mel"][None]))[0])
    else:
        from mlx_rvc.forms.cpu_fcpe import FcpeNumpy

        sal = FcpeNumpy(model)(golden["fcpe_mel"])
    # sigmoid outputs in 0..1 after 14 float32 layers whose sums run in another order than torch's:
    # measured 2.7e-6 max; 1e-4 leaves room for other BLAS kernels
    np.testing.assert_allclose(sal, golden["fcpe_salience"], atol=1e-4)


@pytest.mark.parametrize("form", ["mlx", "numpy"])
def test_f0_matches_torchfcpe(model, golden, form):
    for name in CLIPS:
        ours = model.f0(audio(golden, name), form=form)
        ref = golden["fcpe/" + name]
        assert ours.shape == ref.shape
        np.testing.assert_array_equal(ours > 0, ref > 0, err_msg=name)
        voiced = ref > 0
        assert voiced.mean() > 0.3, name  # the excerpts are mostly voiced: the comparison means something
        # < 1 cent is the parity target; float32 rounding gives ~0.003 cent (measured on 103 s)
        assert cents(ours[voiced], ref[voiced]).max() < 1.0, name


def test_local_argmax_decoder_rules():
    table = np.arange(360, dtype=np.float32) * 20 + 1000
    sal = np.zeros((3, 360), np.float32)
    sal[0, 100] = 0.5  # single peak: exactly its bin
    sal[1, 0], sal[1, 1] = 0.8, 0.4  # peak at the edge: the clamped window counts bin 0 five times
    sal[2, 200] = 0.006  # at the threshold: unvoiced (the reference masks ≤ threshold)
    f0 = fcpe.decode_local_argmax(sal, table, threshold=0.006)
    assert f0[0] == pytest.approx(10 * 2 ** (table[100] / 1200), rel=1e-6)
    c = (5 * 0.8 * table[0] + 0.4 * table[1]) / (5 * 0.8 + 0.4)
    assert f0[1] == pytest.approx(10 * 2 ** (c / 1200), rel=1e-6)
    assert f0[2] == 0


def test_pipeline_alignment_resizes_like_the_reference():
    f0 = np.array([100.0, 100.0, 0.0, 200.0, 200.0])  # len // 160 + 1 frames
    out = pitch.align(f0, method="fcpe", p_len=4)
    # target frame j reads source position j·5/4: 0, 1.25 (between 100 and unvoiced: unvoiced), 2.5, 3.75
    np.testing.assert_allclose(out, [100.0, 0.0, 0.0, 200.0])


def test_estimate_uses_the_library_model(model_dir, golden, monkeypatch):
    lib = model_dir.parent
    (lib / "pitch").mkdir(exist_ok=True)
    monkeypatch.setenv("MLX_RVC_HOME", str(lib))
    if not (lib / "pitch" / "fcpe").exists():
        (lib / "pitch" / "fcpe").symlink_to(model_dir)
    f0 = pitch.estimate(audio(golden, CLIPS[0]), method="fcpe")
    np.testing.assert_array_equal(f0 > 0, golden["fcpe/" + CLIPS[0]] > 0)


def test_refuses_attention_variants(pitch_weights):
    from mlx_rvc.checkpoint import read_checkpoint

    obj = read_checkpoint(pitch_weights["fcpe_c_v001.pt"])
    obj["config_dict"]["model"]["conv_only"] = False
    with pytest.raises(ModelConfigError, match="attention"):
        fcpe.convert_checkpoint(obj, name="x.pt")
    obj["config_dict"]["model"]["type"] = "Other"
    with pytest.raises(UnknownModelError, match="CFNaiveMelPE"):
        fcpe.convert_checkpoint(obj, name="x.pt")


def test_conversion_with_fcpe(pitch_weights, monkeypatch, tmp_path):
    from mlx_rvc import ConversionOptions, VoiceConverter

    from .conftest import MODELS

    monkeypatch.setenv("MLX_RVC_HOME", str(tmp_path))
    import_model(MODELS / "weights" / "v2_48k_f0.pth", name="alice")  # tiny random voice
    import_model(MODELS / "hubert_base_768", name="hubert_base")
    import_model(pitch_weights["fcpe_c_v001.pt"])
    conv = VoiceConverter("alice")
    t = np.arange(32000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    out = conv.convert(x, 16000, ConversionOptions(f0_method="fcpe", unvoiced="keep"), trace=True)
    f0 = out.trace["pitchf_full"]
    p_len = len(out.trace["f0_raw"]) - 1  # fcpe gives len // 160 + 1 frames, resized onto len // 160
    assert len(f0) == p_len
    voiced = f0 > 0
    # a pure 180 Hz tone: the FCPE network (trained on voices) reads it ~9 cents flat; edges are
    # reflect-padded. Within the 50-cent accuracy criterion everywhere
    err = np.abs(1200 * np.log2(f0[voiced] / 180))
    assert voiced.mean() > 0.5 and np.median(err) < 20 and err.max() < 50
    assert conv._f0_networks == {}  # dropped after the pitch phase, like RMVPE
