"""RMVPE on MLX: parity per stage on the tiny reference model, config from weights, strict loading,
the numpy CPU kernels against the MLX path, and blocked evaluation of long inputs."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlx_rvc import forms
from mlx_rvc.forms import cpu_rmvpe
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


def test_every_stage_matches_reference(form):
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


def test_numpy_cpu_kernels_equal_the_mlx_path(tiny):
    """The CPU form runs the U-Net and the GRU in numpy; the GPU form runs the MLX code. Both agree."""
    model = _model(tiny)
    mel = log_mel(np.load(FIXTURES / "rmvpe.npz")["input_16k"])
    with forms.use("cpu"):
        fast = model.salience(mel)
    with forms.use("gpu"):
        slow = model.salience(mel)
    np.testing.assert_allclose(fast, slow, atol=2e-6)


def test_output_length_and_padding_to_32_frames(tiny, form):
    model = _model(tiny)
    for n in (1000, 16000, 16000 + 5 * 160 + 7):  # 7, 101 and 106 frames: none a multiple of 32
        f0 = model.f0(np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1)
        assert f0.shape == (n // 160 + 1,) and np.all(np.isfinite(f0))
    with pytest.raises(ValueError, match="too few"):  # the reference's reflect padding needs > 512 samples
        model.f0(np.zeros(512, np.float32))


def test_long_input_in_blocks_equals_one_pass(tiny, form):
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


def _conv_module(c_in: int, c_out: int, k: int, rng) -> rmvpe.Conv:
    conv = rmvpe.Conv(c_in, c_out, k)
    conv.weight = mx.array((rng.standard_normal((c_out, k, k, c_in)) / np.sqrt(k * k * c_in)).astype(np.float32))
    conv.bias = mx.array(rng.standard_normal(c_out).astype(np.float32))
    return conv


def _same_conv64(x: np.ndarray, conv: rmvpe.Conv) -> np.ndarray:
    """A 'same' conv in float64, tap by tap: (H, W, C) -> (H, W, O)."""
    w, b = np.asarray(conv.weight).astype(np.float64), np.asarray(conv.bias).astype(np.float64)
    k = w.shape[1]
    h, wd = x.shape[:2]
    xp = np.pad(x.astype(np.float64), ((k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    return sum(xp[dy: dy + h, dx: dx + wd] @ w[:, dy, dx].T for dy in range(k) for dx in range(k)) + b


@pytest.mark.parametrize("h, w, splits, c_out", [
    (96, 128, (16,), 16),  # direct form, row tiles
    (96, 128, (24, 8), 16),  # two sources (the decoder's concatenation), direct
    (128, 32, (64,), 64),  # Winograd, row tiles
    (12, 4, (96, 32), 128),  # Winograd, small image: output channels split between the threads
    (13, 4, (64,), 64),  # odd height: not Winograd; 4 columns: column by column, border taps skipped
    (10, 4, (256,), 512),  # the released model's intermediate (first conv, with its shortcut)
    (7, 1, (32,), 16),  # one column (both border taps skipped), fewer than 64 outputs: one part
    (13, 4, (24, 8), 16),  # narrow but two sources: row tiles
    (2, 8, (64,), 64),  # one row pair (a 0.3 s input's deepest Winograd level): no empty half
])
def test_numpy_conv_forms_match_float64(h, w, splits, c_out):
    """Every form of the numpy U-Net's 3x3 conv (direct, Winograd, tiled by rows or by channels,
    with the 1x1 shortcut beside it) equals a float64 convolution at float32 rounding level."""
    rng = np.random.default_rng(h + c_out)
    c_in = sum(splits)
    conv, shortcut = _conv_module(c_in, c_out, 3, rng), _conv_module(c_in, c_out, 1, rng)
    x = rng.standard_normal((h, w, c_in)).astype(np.float32)
    sources, lo = [], 0
    for c in splits:
        src = cpu_rmvpe._padded(h, w, c)
        cpu_rmvpe._interior(src)[...] = x[..., lo: lo + c]
        sources.append(src)
        lo += c
    prepared = cpu_rmvpe._Conv3x3(conv, shortcut)
    out, side = cpu_rmvpe._padded(h, w, c_out), cpu_rmvpe._padded(h, w, c_out)
    prepared(sources, out, shortcut_out=side)
    ref = np.maximum(_same_conv64(x, conv), 0)
    scale = np.abs(ref).max()
    assert np.abs(cpu_rmvpe._interior(out) - ref).max() < 2e-6 * scale
    assert np.abs(cpu_rmvpe._interior(side) - _same_conv64(x, shortcut)).max() < 2e-6 * scale
    for buf in (out, side):  # the zero border that the next convolution reads as padding
        assert not buf[0].any() and not buf[-1].any() and not buf[:, 0].any() and not buf[:, -1].any()
    prepared(sources, side, residual=True)  # a residual block's second conv adds to its input
    assert np.abs(cpu_rmvpe._interior(side) - _same_conv64(x, shortcut) - ref).max() < 4e-6 * scale


def test_numpy_upconv_matches_mlx(form):
    rng = np.random.default_rng(1)
    up = rmvpe.UpConv(64, 32)
    up.weight = mx.array((rng.standard_normal((32, 3, 3, 64)) / 24).astype(np.float32))
    up.bias = mx.array(rng.standard_normal(32).astype(np.float32))
    x = rng.standard_normal((10, 8, 64)).astype(np.float32)
    src, out = cpu_rmvpe._padded(10, 8, 64), cpu_rmvpe._padded(20, 16, 32)
    cpu_rmvpe._interior(src)[...] = x
    cpu_rmvpe._UpConv(up)(src, out)
    np.testing.assert_allclose(cpu_rmvpe._interior(out), np.asarray(up(mx.array(x[None])))[0], atol=2e-6)


def test_long_input_streamed_f0_equals_one_pass(tiny):
    """Past one block, f0 on the CPU runs the GRU in two sweeps over spooled blocks; every frame
    must come out as in one pass (same voicing, f0 to float32 rounding)."""
    model = _model(tiny)
    rng = np.random.default_rng(1)
    n_frames = 3 * 320 + 2 * rmvpe.UNET_CONTEXT_FRAMES + 77  # four blocks of 320, the last partial
    t = np.arange(n_frames * 160) / 16000
    voiced = np.sin(3 * t) > 0  # half the time silent: voicing decisions on both sides
    audio = (0.3 * np.sin(2 * np.pi * (150 + 30 * np.sin(t)) * t) * voiced
             + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    one_pass = rmvpe.salience_to_f0(model.salience(log_mel(audio), block_frames=10**6))
    streamed = model.f0(audio, block_frames=320)
    assert streamed.shape == one_pass.shape
    assert np.array_equal(streamed > 0, one_pass > 0) and 0.2 < (one_pass > 0).mean() < 0.9
    both = (streamed > 0) & (one_pass > 0)
    # measured 1.2e-4 Hz (1e-3 cent): summation order of blocked GEMMs only
    assert np.abs(1200 * np.log2(streamed[both] / one_pass[both])).max() < 0.01


def test_numpy_blas_thread_count_is_restored_after_rmvpe(tiny):
    """The CPU form makes numpy's OpenBLAS single-threaded for its worker threads; later numpy
    work (the content encoder) must get its threads back."""
    from mlx_rvc.forms.cpu_rmvpe import _numpy_openblas_local_threads

    set_threads = _numpy_openblas_local_threads()
    if set_threads is None:
        pytest.skip("numpy's BLAS has no openblas_set_num_threads_local")
    before = set_threads(2)
    set_threads(before)
    model = _model(tiny)
    model.f0(np.random.default_rng(0).standard_normal(16000).astype(np.float32))
    after = set_threads(before)
    assert after == before
