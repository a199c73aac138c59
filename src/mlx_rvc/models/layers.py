"""Building blocks shared by the MLX models. Everything is channels-last: (B, T, C).

Convolution weights use MLX's layout (out, kernel, in). The convolutions are computed by the
active form (:mod:`mlx_rvc.forms`): shifted matrix products, or FFT overlap-save for long kernels,
on the CPU; MLX's native kernels on a GPU. A transposed convolution is stored as a polyphase
filter bank, which both forms compute as one stride-1 convolution: it produces all ``stride``
output phases as extra channels, which a reshape interleaves (see :func:`polyphase_weight` for
the weight layout, prepared once at import).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .. import forms

LRELU_SLOPE = 0.1  # leaky ReLU slope inside HiFi-GAN-style generators


class Conv1d(nn.Module):
    """Stride-1 Conv1d with dilation and padding, channels-last; weight (out, kernel, in)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, dilation: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = mx.zeros((out_channels, kernel_size, in_channels))
        if bias:
            self.bias = mx.zeros((out_channels,))
        self.dilation = dilation
        self.padding = padding

    def __call__(self, x: mx.array) -> mx.array:
        return forms.ops().conv1d_layer(self, x)


def polyphase_weight(weight_torch: np.ndarray, stride: int) -> np.ndarray:
    """ConvTranspose1d weight (in, out, K) in PyTorch layout -> polyphase conv weight.

    Output phase ``r`` of the transposed convolution, at input position ``q``, is
    ``sum_m x[q − m] · W[:, :, r + m·stride]``: an ordinary convolution with taps
    ``W[r], W[r + stride], …`` in reverse order. All phases are stacked as output channels
    ``r·out + o``; the result has MLX conv layout (stride·out, M, in) with M = ceil(K / stride).
    """
    cin, cout, k = weight_torch.shape
    m = -(-k // stride)
    w = np.zeros((cin, cout, m * stride), weight_torch.dtype)
    w[:, :, :k] = weight_torch
    w = w.reshape(cin, cout, m, stride)  # [ci, co, m, r] = W[ci, co, r + m·stride]
    w = w[:, :, ::-1, :]  # tap j = M−1−m
    return np.ascontiguousarray(w.transpose(3, 1, 2, 0).reshape(stride * cout, m, cin))


class ConvTranspose1d(nn.Module):
    """ConvTranspose1d(in, out, K, stride, padding) as a polyphase stride-1 convolution.

    ``weight`` has the layout made by :func:`polyphase_weight`: (stride·out, ceil(K/stride), in).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        taps = -(-kernel_size // stride)
        self.weight = mx.zeros((stride * out_channels, taps, in_channels))
        self.bias = mx.zeros((out_channels,))
        self.stride = stride
        self.padding = padding
        self.kernel_size = kernel_size
        self.out_channels = out_channels

    def __call__(self, x: mx.array) -> mx.array:
        b, t, _ = x.shape
        taps = self.weight.shape[1]
        z = forms.ops().conv1d(x, self.weight, padding=taps - 1)  # (B, T+M−1, stride·out)
        z = z.reshape(b, -1, self.out_channels)  # phases interleaved: (B, (T+M−1)·stride, out)
        t_out = (t - 1) * self.stride - 2 * self.padding + self.kernel_size
        return z[:, self.padding:self.padding + t_out] + self.bias


class StridedConv1dMono(nn.Module):
    """Conv1d(1, out, kernel=2·stride, stride, padding=stride//2) on a mono signal, as a matmul.

    Each output frame sees exactly two consecutive blocks of ``stride`` samples, so the
    convolution is one (T_out, 2·stride) x (2·stride, out) product. ``weight`` is (out, K, 1).
    """

    def __init__(self, out_channels: int, stride: int):
        super().__init__()
        self.weight = mx.zeros((out_channels, 2 * stride, 1))
        self.bias = mx.zeros((out_channels,))
        self.stride = stride

    def __call__(self, x: mx.array) -> mx.array:
        b, n, _ = x.shape  # x: (B, N, 1)
        s = self.stride
        pad = s // 2
        t_out = (n + 2 * pad - 2 * s) // s + 1
        blocks = t_out + 1
        xp = mx.pad(x[..., 0], [(0, 0), (pad, max(blocks * s - n - pad, 0))])[:, : blocks * s]
        xb = xp.reshape(b, blocks, s)
        frames = mx.concatenate([xb[:, :-1], xb[:, 1:]], axis=-1)  # (B, T_out, 2s)
        return frames @ self.weight[:, :, 0].T + self.bias


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels with VITS's parameter names (gamma, beta), eps 1e-5."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.gamma = mx.ones((channels,))
        self.beta = mx.zeros((channels,))
        self.eps = eps

    def __call__(self, x: mx.array) -> mx.array:
        return mx.fast.layer_norm(x, self.gamma, self.beta, self.eps)


class ChannelAffine(nn.Module):
    """A per-channel scale and shift over the last axis: an inference BatchNorm folded at import."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = mx.ones((channels,))
        self.shift = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        return x * self.scale + self.shift


def leaky_relu(x: mx.array, slope: float) -> mx.array:
    return forms.ops().leaky_relu(x, slope)


def fold_weight_norm(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """w = g · v / ‖v‖, the norm taken over every axis where ``g`` has size 1 (torch's ``dim``)."""
    axes = tuple(i for i in range(v.ndim) if g.shape[i] == 1)
    v64 = v.astype(np.float64)
    norm = np.sqrt(np.sum(v64 * v64, axis=axes, keepdims=True))
    return (g.astype(np.float64) * v64 / norm).astype(np.float32)


def fold_all_weight_norms(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Replace ``X.weight_g``/``X.weight_v`` and ``X.parametrizations.weight.original0/1`` by ``X.weight``."""
    out: dict[str, np.ndarray] = {}
    pairs = {
        ".weight_g": ".weight_v",
        ".parametrizations.weight.original0": ".parametrizations.weight.original1",
    }
    for key, value in weights.items():
        for g_suffix, v_suffix in pairs.items():
            if key.endswith(g_suffix):
                base = key[: -len(g_suffix)]
                v_key = base + v_suffix
                if v_key not in weights:
                    raise KeyError(f"{key} has no matching {v_key}")
                out[base + ".weight"] = fold_weight_norm(value, weights[v_key])
                break
            if key.endswith(v_suffix):
                g_key = key[: -len(v_suffix)] + g_suffix
                if g_key not in weights:
                    raise KeyError(f"{key} has no matching {g_key}")
                break
        else:
            out[key] = value
    return out


def conv_weight_to_mlx(w: np.ndarray) -> np.ndarray:
    """Conv1d weight (out, in, K) -> MLX (out, K, in)."""
    return np.ascontiguousarray(w.transpose(0, 2, 1))


def sequence_mask(lengths: mx.array, max_length: int) -> mx.array:
    """(B,) lengths -> (B, T, 1) float mask, 1 inside each sequence."""
    return (mx.arange(max_length)[None, :] < lengths[:, None]).astype(mx.float32)[..., None]


def check_shapes(model: nn.Module, weights: dict, what: str) -> None:
    """Strict comparison of parameter names and shapes; raises ModelConfigError naming the first problems."""
    from mlx.utils import tree_flatten

    from ..errors import ModelConfigError

    expected = {k: tuple(v.shape) for k, v in tree_flatten(model.parameters())}
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if tuple(weights[k].shape) != expected[k])
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:4])}{'…' if len(missing) > 4 else ''}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:4])}{'…' if len(unexpected) > 4 else ''}")
    if wrong:
        problems.append(f"{len(wrong)} mis-shaped, e.g. {wrong[0]} {tuple(weights[wrong[0]].shape)} vs {expected[wrong[0]]}")
    if problems:
        raise ModelConfigError(f"{what} weights do not match the config: " + "; ".join(problems))


def load_strict(model: nn.Module, weights: dict, what: str) -> nn.Module:
    """Check, then load numpy or MLX weights (floating ones as float32) and evaluate them."""
    check_shapes(model, weights, what)

    def as_mx(v):
        v = v if isinstance(v, mx.array) else mx.array(v)
        return v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v

    model.load_weights([(k, as_mx(v)) for k, v in weights.items()], strict=True)
    mx.eval(model.parameters())
    return model


@contextmanager
def buffer_cache(limit_bytes: int) -> Iterator[None]:
    """Let MLX keep up to ``limit_bytes`` of freed buffers for reuse inside the block, then restore.

    MLX's CPU allocator caches only 32 MiB of freed buffers by default and hands larger ones back
    to the C allocator, which unmaps them: a model run again on same-sized inputs then faults every
    page of its activations in afresh (measured on a 2 s decoder piece: ~30,000 page faults per
    pair of FFT convolutions, a third of their time). A previous larger limit is kept.
    """
    old = mx.set_cache_limit(limit_bytes)
    if old > limit_bytes:
        mx.set_cache_limit(old)
    try:
        yield
    finally:
        mx.set_cache_limit(old)


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


__all__ = [
    "LRELU_SLOPE", "Conv1d", "ConvTranspose1d", "StridedConv1dMono", "ChannelLayerNorm",
    "polyphase_weight", "fold_weight_norm", "fold_all_weight_norms",
    "conv_weight_to_mlx", "leaky_relu", "buffer_cache", "sequence_mask", "get_padding", "check_shapes", "load_strict",
]
