"""The GPU form's operations: MLX's native convolutions (cuDNN on CUDA, Metal's kernels on Apple
silicon) and compiled element-wise chains, so a layer is a kernel or two instead of the K
shifted matrix products and separate passes the CPU form uses. Same signatures as
:mod:`mlx_rvc.forms.cpu`; nothing here leaves the device.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


def conv1d(x: mx.array, weight: mx.array, bias: mx.array | None = None, *, dilation: int = 1,
           padding: int = 0) -> mx.array:
    """Stride-1 conv1d with dilation and symmetric zero padding. x (B, T, Cin); weight (Cout, K, Cin)."""
    y = mx.conv1d(x, weight, padding=padding, dilation=dilation)
    return y if bias is None else y + bias


def conv1d_layer(conv, x: mx.array) -> mx.array:
    """A :class:`mlx_rvc.models.layers.Conv1d` module applied to x."""
    return conv1d(x, conv.weight, conv.bias if "bias" in conv else None, dilation=conv.dilation,
                  padding=conv.padding)


def strided_conv1d(x: mx.array, weight: mx.array, bias: mx.array | None, stride: int) -> mx.array:
    """Unpadded strided conv1d. x (B, T, Cin); weight (Cout, K, Cin)."""
    y = mx.conv1d(x, weight, stride=stride)
    return y if bias is None else y + bias


def conv2d(x: mx.array, weight: mx.array, bias: mx.array) -> mx.array:
    """'Same' Conv2d with bias, NHWC; weight (out, kh, kw, in)."""
    return mx.conv2d(x, weight, padding=weight.shape[1] // 2) + bias


def conv_transpose2d_x2(x: mx.array, weight: mx.array, bias: mx.array) -> mx.array:
    """ConvTranspose2d 3x3, stride 2, padding 1, output padding 1; weight (out, 3, 3, in)."""
    return mx.conv_transpose2d(x, weight, stride=2, padding=1, output_padding=1) + bias


@mx.compile
def gelu(x: mx.array) -> mx.array:
    """Exact (erf) GELU, one fused kernel."""
    return nn.gelu(x)


def softmax(x: mx.array) -> mx.array:
    """Softmax over the last axis, accumulated in float32."""
    return mx.softmax(x, axis=-1, precise=True)


@mx.compile
def _leaky_relu(x: mx.array, slope: mx.array) -> mx.array:
    return mx.maximum(x, slope * x)


_SLOPES: dict[float, mx.array] = {}


def leaky_relu(x: mx.array, slope: float) -> mx.array:
    """max(x, slope·x) in one kernel (the slope passed as an array: one compiled graph for all)."""
    s = _SLOPES.get(slope)
    if s is None:
        s = _SLOPES[slope] = mx.array(slope, dtype=mx.float32)
    return _leaky_relu(x, s)


@mx.compile
def _gate(a: mx.array, b: mx.array) -> mx.array:
    return mx.tanh(a) * mx.sigmoid(b)


def gated_tanh(a: mx.array, h: int) -> mx.array:
    """WaveNet unit tanh(a[..., :h]) · sigmoid(a[..., h:]) in one kernel."""
    return _gate(a[..., :h], a[..., h:])


GPU_BUDGET_FRACTION = 4  # a decoder piece may use 1/4 of the device's memory (MLX's limit) ...
# ... up to 6 GiB (~10 s pieces at 48 kHz): measured on an H200, 30 s decoded in one pass took
# 0.131 s, in 10 s pieces 0.139 s, so bigger pieces buy nothing
GPU_BUDGET_CAP = 6 << 30
GPU_BUDGET_UNKNOWN = 2 << 30  # where the device reports no memory size


def memory_budget() -> int:
    """Bytes one decoder piece may hold on the device (its memory limit / 4, at most 8 GiB)."""
    size = 0
    try:
        size = int(mx.get_memory_limit()) or int(mx.device_info().get("memory_size", 0))
    except (AttributeError, RuntimeError, ValueError):
        pass
    if size <= 0:
        return GPU_BUDGET_UNKNOWN
    return min(size // GPU_BUDGET_FRACTION, GPU_BUDGET_CAP)
