"""FFT overlap-save convolution against the direct shifted-GEMM convolution and the definition."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlx.utils import tree_flatten

from mlx_rvc import forms
from mlx_rvc.forms import cpu
from mlx_rvc.forms.cpu import conv1d
from mlx_rvc.forms.fftconv import fft_conv1d, fft_size, kernel_spectrum
from mlx_rvc.models import nsf
from mlx_rvc.models.layers import Conv1d, buffer_cache

from .test_layers import conv1d_ref


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))


@pytest.mark.parametrize("k,d,t,n_fft", [
    (11, 1, 300, 64), (11, 3, 300, 128), (11, 5, 500, 256), (7, 1, 200, 64), (7, 5, 90, 256),
    (3, 1, 50, 16), (11, 5, 20, 64),  # input shorter than one frame's hop
])
def test_overlap_save_matches_definition(k, d, t, n_fft):
    rng = np.random.default_rng(k * 1000 + d * 10 + t)
    x = rng.standard_normal((t, 12)).astype(np.float32)
    w = rng.standard_normal((5, 12, k)).astype(np.float32)  # PyTorch (out, in, K)
    b = rng.standard_normal(5).astype(np.float32)
    pad = d * (k - 1) // 2
    spec = kernel_spectrum(w.transpose(0, 2, 1), dilation=d, n_fft=n_fft)
    assert spec.shape == (n_fft // 2 + 1, 12, 5) and spec.dtype == mx.complex64
    y = fft_conv1d(mx.array(x[None]), spec, mx.array(b), kernel_size=k, dilation=d, padding=pad)
    ref = conv1d_ref(x, w, padding=pad, dilation=d) + b
    assert y.shape == (1,) + ref.shape
    # float32 transforms: rounding ~1e-7 of the output scale, like the direct float32 sum
    assert _rel(y[0], ref) < 2e-6


@pytest.mark.parametrize("k,d,n_fft", [(11, 5, 256), (7, 1, 128), (3, 1, 8), (11, 1, 11)])
def test_kernel_spectrum_is_the_transform_of_the_reversed_dilated_kernel(k, d, n_fft):
    """The spectrum comes from a K-tap DFT, not a transform of the zero-padded kernel: it must
    equal the float64 FFT of h[S−1−j·d] = w[j] to complex64 rounding."""
    rng = np.random.default_rng(k + d)
    w = rng.standard_normal((6, k, 4)).astype(np.float32)  # (Cout, K, Cin)
    span = (k - 1) * d + 1
    h = np.zeros((n_fft, 4, 6))  # float64: the float32 weights are exact in it
    h[span - 1 - d * np.arange(k)] = w.transpose(1, 2, 0)
    ref = np.fft.rfft(h, axis=0)
    spec = np.asarray(kernel_spectrum(w, dilation=d, n_fft=n_fft))
    assert np.abs(spec - ref).max() <= 1.2e-7 * np.abs(ref).max()  # one complex64 rounding per bin
    with pytest.raises(ValueError, match="shorter"):
        kernel_spectrum(w, dilation=d, n_fft=span - 1)


@pytest.mark.parametrize("padding", [0, 5, 12])
def test_batch_and_any_padding_equal_direct_convolution(padding):
    rng = np.random.default_rng(padding)
    x = mx.array(rng.standard_normal((3, 700, 16)).astype(np.float32))
    w = mx.array(rng.standard_normal((8, 11, 16)).astype(np.float32))
    direct = conv1d(x, w, None, dilation=3, padding=padding)
    fft = fft_conv1d(x, kernel_spectrum(w, dilation=3, n_fft=128), None, kernel_size=11, dilation=3,
                     padding=padding)
    assert fft.shape == direct.shape
    for i in range(3):  # items stay apart
        assert _rel(fft[i], direct[i]) < 2e-6


def test_fft_size_follows_the_plan():
    assert fft_size(11, 1, 128) == 128  # span 11: 8 spans = 88, at least 128
    assert fft_size(7, 3, 64) == 256  # span 19: 152 -> 256
    assert fft_size(11, 5, 128) == 256  # span 51: capped at 256
    # 256 channels stay direct: their kernel spectra would not fit the memory budget
    assert fft_size(11, 1, 32) is None and fft_size(3, 1, 128) is None and fft_size(11, 1, 256) is None
    with pytest.raises(ValueError, match="shorter than the kernel span"):
        kernel_spectrum(np.zeros((2, 11, 2), np.float32), dilation=5, n_fft=32)


def test_cpu_form_convolves_planned_modules_by_fft_and_follows_new_weights():
    rng = np.random.default_rng(0)
    conv = Conv1d(64, 64, 7, dilation=3, padding=9)
    assert cpu.fft_plan(conv) == 256
    x = mx.array(rng.standard_normal((1, 400, 64)).astype(np.float32))
    with forms.use("cpu"):
        for _ in range(2):  # the spectrum is rebuilt when new weights are loaded
            conv.load_weights([("weight", mx.array(rng.standard_normal((64, 7, 64)).astype(np.float32))),
                               ("bias", mx.array(rng.standard_normal(64).astype(np.float32)))])
            by_fft = conv(x)
            direct = cpu.conv1d(x, conv.weight, conv.bias, dilation=3, padding=9)
            assert _rel(by_fft, direct) < 2e-6
        cpu.FFT_CONV = False
        try:
            np.testing.assert_array_equal(np.asarray(conv(x)), np.asarray(direct))
        finally:
            cpu.FFT_CONV = True


def test_residual_blocks_use_fft_only_where_it_was_measured_faster():
    assert cpu.fft_plan(nsf.resblock_conv(128, 11, 5)) == 256
    assert cpu.fft_plan(nsf.resblock_conv(64, 7, 1)) is not None
    assert cpu.fft_plan(nsf.resblock_conv(32, 11, 1)) is None
    assert cpu.fft_plan(nsf.resblock_conv(128, 3, 1)) is None
    assert cpu.fft_plan(nsf.resblock_conv(256, 11, 1)) is None
    assert cpu.fft_plan(Conv1d(64, 128, 7)) is None  # only square kernels are planned
    block = nsf.ResBlock1(64, 11, (1, 3, 5))
    rng = np.random.default_rng(1)
    block.load_weights([(k, mx.array(0.05 * rng.standard_normal(v.shape).astype(np.float32)))
                        for k, v in tree_flatten(block.parameters())])
    x = mx.array(rng.standard_normal((1, 1000, 64)).astype(np.float32))
    with forms.use("cpu"):
        fft = block(x)
        cpu.FFT_CONV = False
        try:
            direct = block(x)
        finally:
            cpu.FFT_CONV = True
    assert _rel(fft, direct) < 2e-6


def test_buffer_cache_is_restored():
    old = mx.set_cache_limit(32 << 20)
    try:
        with buffer_cache(256 << 20):
            assert mx.set_cache_limit(256 << 20) == 256 << 20
        assert mx.set_cache_limit(32 << 20) == 32 << 20
        with buffer_cache(1 << 20):  # a larger limit already set is kept
            assert mx.set_cache_limit(32 << 20) == 32 << 20
    finally:
        mx.set_cache_limit(old)
