"""RMVPE on MLX: parity per stage on the tiny reference model, config from weights, strict loading,
the numpy CPU kernels against the MLX path, and blocked evaluation of long inputs."""

from __future__ import annotations

import numpy as np
import pytest

from mlx_rvc.dsp.mel import log_mel
from mlx_rvc.errors import MlxRvcError
from mlx_rvc.importer import convert, import_model, read_source
from mlx_rvc.models import rmvpe
from mlx_rvc.parity import run_parity

from .conftest import FIXTURES, MODELS


@pytest.fixture(scope="module")
def tiny() -> tuple[dict, dict]:
    return convert(read_source(MODELS / "rmvpe.pt"))


def _model(tiny) -> rmvpe.E2E:
    config, weights = tiny
    return rmvpe.build(rmvpe.RmvpeConfig.from_dict(config), weights)


def test_every_stage_matches_reference():
    report = run_parity(FIXTURES / "rmvpe.npz")
    assert report.passed, [c.as_dict() for c in report.checks if not c.passed]
    by_key = {c.key: c for c in report.checks}
    # measured: mel 4e-7, salience 3e-7, f0 2e-7 relative RMS
    assert by_key["mel"].diff.rel_rms < 2e-6
    assert by_key["hidden"].diff.rel_rms < 2e-6
    ref = np.load(FIXTURES / "rmvpe.npz")["f0"]
    produced = report.produced["f0"]
    assert np.array_equal(produced > 0, ref > 0)  # identical voicing decisions
    voiced = ref > 0
    cents = 1200 * np.abs(np.log2(produced[voiced] / ref[voiced]))
    assert cents.max() < 0.01


def test_config_is_read_from_weights_and_imports(tiny, tmp_path):
    config, _ = tiny
    assert (config["en_de_layers"], config["inter_layers"], config["n_blocks"]) == (5, 2, 1)
    assert (config["en_out_channels"], config["n_gru"], config["gru_hidden"], config["n_classes"]) == (2, 1, 256, 360)
    model = rmvpe.load(import_model(MODELS / "rmvpe.pt", out=tmp_path / "rmvpe").path)
    audio = np.load(FIXTURES / "rmvpe.npz")["input_16k"]
    np.testing.assert_allclose(model.f0(audio), np.load(FIXTURES / "rmvpe.npz")["f0"], rtol=1e-4)


def test_loading_is_strict(tiny):
    config, weights = tiny
    cfg = rmvpe.RmvpeConfig.from_dict(config)
    missing = {k: v for k, v in weights.items() if k != "cnn.weight"}
    with pytest.raises(MlxRvcError, match="cnn.weight"):
        rmvpe.build(cfg, missing)
    wrong = dict(weights, **{"fc.1.bias": np.zeros(359, np.float32)})
    with pytest.raises(MlxRvcError, match="fc.1.bias"):
        rmvpe.build(cfg, wrong)


def test_numpy_cpu_kernels_equal_the_mlx_path(tiny, monkeypatch):
    """The CPU runs the U-Net and the GRU in numpy; other devices run the MLX code. Both agree."""
    model = _model(tiny)
    mel = log_mel(np.load(FIXTURES / "rmvpe.npz")["input_16k"])
    fast = model.salience(mel)
    monkeypatch.setattr(rmvpe, "NUMPY_ON_CPU", False)
    slow = model.salience(mel)
    np.testing.assert_allclose(fast, slow, atol=2e-6)


def test_output_length_and_padding_to_32_frames(tiny):
    model = _model(tiny)
    for n in (1000, 16000, 16000 + 5 * 160 + 7):  # 7, 101 and 106 frames: none a multiple of 32
        f0 = model.f0(np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1)
        assert f0.shape == (n // 160 + 1,) and np.all(np.isfinite(f0))
    with pytest.raises(ValueError, match="too few"):  # the reference's reflect padding needs > 512 samples
        model.f0(np.zeros(512, np.float32))


def test_long_input_in_blocks_equals_one_pass(tiny):
    """Blocks of 320 frames with the U-Net's exact context reproduce the single pass."""
    model = _model(tiny)
    rng = np.random.default_rng(0)
    n_frames = 320 + 2 * rmvpe.UNET_CONTEXT_FRAMES + 200  # just past what one pass takes
    t = np.arange(n_frames * 160) / 16000
    audio = (0.3 * np.sin(2 * np.pi * (150 + 30 * np.sin(t)) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    mel = log_mel(audio)
    one_pass = model.salience(mel, block_frames=10**6)
    blocked = model.salience(mel, block_frames=320)
    assert np.abs(blocked - one_pass).max() < 1e-6
