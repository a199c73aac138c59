"""The CPU form's operations: convolutions as matrix products, element-wise work where MLX's CPU
backend is slow done by numpy or fused kernels.

MLX's CPU convolutions go through an im2col buffer (K times the input) and are slow for dilated
(50-100x) and transposed kernels; its element-wise kernels run on one thread. The functions here
compute exactly what the model modules state, in forms measured faster on a 2-core x86 CPU,
and decode in pieces on two threads. Whole models that run in numpy on the CPU have modules of
their own beside this one: ``cpu_rmvpe`` (U-Net, BiGRU), ``cpu_hubert``, ``cpu_attention``
(the text encoder).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import mlx.core as mx
import numpy as np

from ..backend import mlx_blas_threads, shared_malloc_arena
from .fftconv import fft_conv1d, fft_size, kernel_spectrum

# float32 rational approximation of erf on [-4, 4] (erf is ±1 to float32 precision beyond):
# erf(x) ≈ x·P(x²)/Q(x²); measured max |error| 4.2e-7 against float64 erf
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)
_SQRT_HALF = 0.7071067811865476
# Measured for 30 s of RMVPE (2-core x86, MLX 0.32): MLX's conv2d is memory-bound below 256 input
# channels, where three row GEMMs are up to 2.5x faster; at 512 channels conv2d wins.
ROWS_CONV_MAX_CHANNELS = 256


def conv1d(x: mx.array, weight: mx.array, bias: mx.array | None = None, *, dilation: int = 1,
           padding: int = 0) -> mx.array:
    """Stride-1 ``conv1d`` with any dilation and symmetric zero padding, as shifted matmuls.

    x: (B, T, Cin); weight: (Cout, K, Cin); bias: (Cout,). Returns (B, T + 2·padding − dilation·(K−1), Cout).

    Tap ``j`` multiplies the rows ``x[j·d : j·d + T_out]``, a contiguous block of the padded
    input, so the convolution is K accumulating GEMMs (``addmm`` = BLAS with beta 1) and needs
    no im2col buffer and no transposes. Measured against MLX's own CPU conv1d: 2–4x faster at
    32–256 channels, and any dilation costs the same.
    """
    k = weight.shape[1]
    if padding:
        x = mx.pad(x, [(0, 0), (padding, padding), (0, 0)])
    t_out = x.shape[1] - dilation * (k - 1)
    y = bias
    for j in range(k):
        xs = x[:, j * dilation: j * dilation + t_out]
        wj = weight[:, j, :].T  # (Cin, Cout)
        y = xs @ wj if y is None else mx.addmm(y, xs, wj)
    return y


FFT_CONV = True  # long square kernels by FFT overlap-save where planned; False: always shifted matmuls


def fft_plan(conv) -> int | None:
    """Transform length for a Conv1d module by :func:`mlx_rvc.forms.fftconv.fft_size`, or None (direct)."""
    c_out, k, c_in = conv.weight.shape
    return fft_size(k, conv.dilation, c_in) if c_in == c_out else None


def _spectrum(conv, n_fft: int) -> mx.array:
    """The module's kernel spectrum, derived on first use and again when its weight is replaced
    (new weights loaded); kept on the module, outside its parameters."""
    source, spec = getattr(conv, "_fft_spectrum", (None, None))
    if source is not conv.weight:
        spec = kernel_spectrum(conv.weight, dilation=conv.dilation, n_fft=n_fft)
        mx.eval(spec)
        object.__setattr__(conv, "_fft_spectrum", (conv.weight, spec))
    return spec


def conv1d_layer(conv, x: mx.array) -> mx.array:
    """A :class:`mlx_rvc.models.layers.Conv1d` module applied to x: by FFT overlap-save where
    :func:`fft_plan` plans it (residual-block kernels of 7 and 11 taps at 64-128 channels were
    measured 1.35-1.6x faster so), else as shifted matmuls."""
    bias = conv.bias if "bias" in conv else None
    n_fft = fft_plan(conv) if FFT_CONV else None
    if n_fft is None:
        return conv1d(x, conv.weight, bias, dilation=conv.dilation, padding=conv.padding)
    return fft_conv1d(x, _spectrum(conv, n_fft), bias, kernel_size=conv.weight.shape[1], dilation=conv.dilation,
                      padding=conv.padding)


def warm_spectra(model) -> None:
    """Derive every planned FFT convolution's kernel spectrum of ``model`` now (before threads share it)."""
    from ..models.layers import Conv1d

    for _, module in model.named_modules():
        if isinstance(module, Conv1d) and FFT_CONV and (n_fft := fft_plan(module)) is not None:
            _spectrum(module, n_fft)


# ----------------------------------------------------------------------------- decoding on threads

DECODE_WORKERS = 2  # decoder pieces evaluated at once, one thread (and MLX stream) each
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)


def _pool(workers: int) -> ThreadPoolExecutor:
    """The decoder's worker threads, kept for the process (remade in a forked child)."""
    global _POOL
    if _POOL is None or _POOL[:2] != (os.getpid(), workers):
        _POOL = (os.getpid(), workers, ThreadPoolExecutor(workers, thread_name_prefix="mlx-rvc-decode"))
    return _POOL[2]


def decode_workers(pieces: int) -> int:
    """How many decoder pieces to evaluate at once: :data:`DECODE_WORKERS` on a multi-core CPU.

    MLX's CPU backend runs everything but BLAS on one thread (transforms, element-wise
    operations, copies), so two pieces on two threads, each matmul on one core, keep both
    cores busy: measured on 10 s of a v2 48 kHz decoder in 1 s pieces, 6.8 s one at a time,
    5.5 s two at a time. Each worker holds one piece's activations (~0.1 GB at 1 s).
    """
    return max(1, min(DECODE_WORKERS, os.cpu_count() or 1, pieces))


def decode_pieces(model, piece, bounds: list) -> list:
    """``piece(bound)`` for every bound, :func:`decode_workers` at a time on worker threads, each
    matmul on its share of the cores; glibc's per-thread heaps are turned off first (buffers
    freed in one thread's arena were never reused by another: 1.35 vs 0.84 GB)."""
    workers = decode_workers(len(bounds))
    if workers == 1:
        return [piece(bound) for bound in bounds]
    shared_malloc_arena()
    warm_spectra(model)
    with mlx_blas_threads(max(1, (os.cpu_count() or 1) // workers)):
        return list(_pool(workers).map(piece, bounds))


def strided_conv1d(x: mx.array, weight: mx.array, bias: mx.array | None, stride: int) -> mx.array:
    """Unpadded Conv1d with stride as matmuls. x: (B, T, Cin); weight: (Cout, K, Cin)."""
    b, t, c = x.shape
    cout, k, _ = weight.shape
    t_out = (t - k) // stride + 1
    if k % stride == 0:  # each output frame covers k/stride whole blocks of `stride` frames
        n = k // stride
        blocks = x[:, : (t_out + n - 1) * stride].reshape(b, t_out + n - 1, stride * c)
        frames = blocks if n == 1 else mx.concatenate([blocks[:, i: i + t_out] for i in range(n)], axis=-1)
        w = weight.reshape(cout, k * c).T  # tap-major rows, as the frames
        return frames @ w if bias is None else mx.addmm(bias, frames, w)
    y = bias
    for j in range(k):
        xs = x[:, j: j + stride * (t_out - 1) + 1: stride]
        y = xs @ weight[:, j, :].T if y is None else mx.addmm(y, xs, weight[:, j, :].T)
    return y


def conv3x3_rows(x: mx.array, weight: mx.array, bias: mx.array) -> mx.array:
    """3x3 'same' conv as three GEMMs: the three column shifts are stacked on channels once,
    after which each row shift is a contiguous block of the flattened image.

    x: (B, H, W, C); weight: (O, 3, 3, C).
    """
    b, h, w, c = x.shape
    xp = mx.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    cols = mx.concatenate([xp[:, :, dx: dx + w] for dx in range(3)], axis=-1)  # (B, H+2, W, 3C)
    flat = cols.reshape(b, (h + 2) * w, 3 * c)
    y = bias
    for dy in range(3):
        wj = weight[:, dy].reshape(weight.shape[0], 3 * c).T  # (3C, O), dx-major like the stack
        rows = flat[:, dy * w: dy * w + h * w]
        y = rows @ wj if y is None else mx.addmm(y, rows, wj)
    return y.reshape(b, h, w, -1)


def conv2d(x: mx.array, weight: mx.array, bias: mx.array) -> mx.array:
    """'Same' Conv2d (3x3 or 1x1) with bias, NHWC; weight (out, kh, kw, in)."""
    k = weight.shape[1]
    if k == 1:  # one 2-D GEMM (a 4-D operand would run as B·H small batched GEMMs)
        y = mx.addmm(bias, x.reshape(-1, x.shape[-1]), weight[:, 0, 0, :].T)
        return y.reshape(*x.shape[:-1], -1)
    if k == 3 and x.shape[-1] <= ROWS_CONV_MAX_CHANNELS:
        return conv3x3_rows(x, weight, bias)
    return mx.conv2d(x, weight, padding=k // 2) + bias


def conv_transpose2d_x2(x: mx.array, weight: mx.array, bias: mx.array) -> mx.array:
    """ConvTranspose2d 3x3, stride 2, padding 1, output padding 1, as polyphase GEMMs (no ReLU).

    Output pixel (2i+a, 2j+b) sums taps of input (i+dy, j+dx) only. Along one axis, with
    padding 1: even outputs take tap 1 at offset 0; odd outputs take tap 2 at offset 0 and tap 0
    at offset +1 (zero past the edge). MLX's own transposed convolution runs ~50x slower here.
    x: (B, H, W, C); weight (out, 3, 3, in) as MLX's conv_transpose2d takes it.
    """
    b, h, w, c = x.shape
    wp = w + 1
    # the +1 neighbours past the edge are 0; one more zero row keeps the last block in bounds
    flat = mx.pad(x, [(0, 0), (0, 2), (0, 1), (0, 0)]).reshape(b, (h + 2) * wp, c)
    taps = {0: [(1, 0)], 1: [(2, 0), (0, 1)]}  # phase -> [(kernel tap, input offset)]
    phases = []
    for a in (0, 1):
        row = []
        for cc in (0, 1):
            y = bias
            for ky, dy in taps[a]:
                for kx, dx in taps[cc]:
                    # offset (dy, dx) is a contiguous block of rows of the flattened image (one
                    # 2-D GEMM; a 4-D strided slice would run as H small batched GEMMs)
                    start = dy * wp + dx
                    y = mx.addmm(y, flat[:, start: start + h * wp], weight[:, ky, kx, :].T)
            row.append(y.reshape(b, h, wp, -1)[:, :, :w])
        phases.append(mx.stack(row, axis=3))  # (B, H, W, 2, C)
    out = mx.stack(phases, axis=2)  # (B, H, 2, W, 2, C)
    return out.reshape(b, 2 * h, 2 * w, -1)


def _erf(x: mx.array) -> mx.array:
    x = mx.clip(x, -4.0, 4.0)
    x2 = x * x
    p = x2 * _ERF_P[0] + _ERF_P[1]
    for c in _ERF_P[2:]:
        p = p * x2 + c
    q = x2 * _ERF_Q[0] + _ERF_Q[1]
    for c in _ERF_Q[2:]:
        q = q * x2 + c
    return x * p / q


@mx.compile
def gelu(x: mx.array) -> mx.array:
    """Exact (erf) GELU with a fused rational erf: MLX's CPU erf runs at ~40 M elements/s, this 3x faster."""
    return 0.5 * x * (1.0 + _erf(x * _SQRT_HALF))


def softmax(x: mx.array) -> mx.array:
    """Softmax over the last axis through numpy: MLX's CPU exp runs ~20x slower (and ~4e-6 off)."""
    a = np.asarray(x.astype(mx.float32))
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return mx.array(e)


def layer_norm_numpy(x: np.ndarray, weight, bias, eps: float, *, inplace: bool = False) -> np.ndarray:
    """LayerNorm over the last axis in float32 numpy, as torch computes it (in ``x`` with ``inplace``)."""
    d = np.subtract(x, x.mean(axis=-1, keepdims=True), out=x if inplace else None)
    var = np.mean(np.square(d), axis=-1, keepdims=True)
    d *= 1.0 / np.sqrt(var + eps)
    d *= np.asarray(weight)
    d += np.asarray(bias)
    return d


def leaky_relu(x: mx.array, slope: float) -> mx.array:
    return mx.maximum(x, slope * x)


def gated_tanh(a: mx.array, h: int) -> mx.array:
    """WaveNet unit tanh(a[..., :h]) · sigmoid(a[..., h:])."""
    return mx.tanh(a[..., :h]) * mx.sigmoid(a[..., h:])
