"""The VITS/RVC text-encoder transformer: relative-position self-attention, post-LN. Channels-last.

Parameter names follow the reference (``attn_layers.N.conv_q``, ``norm_layers_1.N.gamma``,
``ffn_layers.N.conv_1``…); its 1x1 convolutions are stored as (out, 1, in) conv weights and
applied as matrix products.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .. import forms
from ..forms.cpu import layer_norm_numpy
from .layers import ChannelLayerNorm

MASKED_SCORE = -1e4  # the reference fills masked attention scores with -1e4, not -inf


class PointwiseConv(nn.Module):
    """A kernel-1 Conv1d (weight (out, 1, in)) applied as a matmul on (B, T, in)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = mx.zeros((out_channels, 1, in_channels))
        self.bias = mx.zeros((out_channels,))

    def __call__(self, x: mx.array) -> mx.array:
        return mx.addmm(self.bias, x, self.weight[:, 0, :].T)


ATTENTION_ROWS = 1024  # query rows per block: a 40 s chunk's whole (T × T) maps are 128 MB each


def band_to_rows(band: mx.array) -> mx.array:
    """(…, n, W) per-offset values -> (…, n, n + W − 1) with M[i, i + j] = band[i, j], zeros elsewhere.

    Pad each row to length L = n + W and re-read the flat buffer with rows of L − 1: row i
    then starts i places earlier, i.e. its values move i places right. Copies and reshapes
    only; no gather.
    """
    *lead, n, width = band.shape
    length = n + width
    x = mx.pad(band, [(0, 0)] * len(lead) + [(0, 0), (0, n)])  # (…, n, L)
    return x.reshape(*lead, n * length)[..., : n * (length - 1)].reshape(*lead, n, length - 1)


def rows_to_band(m: mx.array, width: int) -> mx.array:
    """(…, n, n + W − 1) -> (…, n, W) with B[i, j] = m[i, i + j]; the inverse skew of :func:`band_to_rows`.

    Pad each row by one to length R = n + W, append n zeros to the flat buffer and re-read it
    with rows of R + 1: row i then starts i places later.
    """
    *lead, n, _ = m.shape
    length = n + width
    x = mx.pad(m, [(0, 0)] * len(lead) + [(0, 0), (0, 1)]).reshape(*lead, n * length)
    x = mx.pad(x, [(0, 0)] * len(lead) + [(0, n)])
    return x.reshape(*lead, n, length + 1)[..., :width]


def _columns(m: mx.array, lo: int, hi: int, t: int) -> mx.array:
    """Columns ``lo..hi`` of a matrix with ``t`` columns, zeros where that range leaves it."""
    inner = m[..., max(lo, 0): min(hi, t)]
    pad = [(0, 0)] * (m.ndim - 1) + [(max(-lo, 0), max(hi - t, 0))]
    return mx.pad(inner, pad) if pad[-1] != (0, 0) else inner


class MultiHeadAttention(nn.Module):
    """Self-attention with shared relative-position embeddings for keys and values.

    ``emb_rel_k``/``emb_rel_v`` are (1, 2·window+1, head_dim): entry ``j`` belongs to the
    offset ``s − t = j − window``; offsets beyond the window contribute nothing, as in the
    reference (which pads these tables with zeros).
    """

    def __init__(self, channels: int, n_heads: int, window_size: int = 10):
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels {channels} not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.k_channels = channels // n_heads
        self.window_size = window_size
        self.conv_q = PointwiseConv(channels, channels)
        self.conv_k = PointwiseConv(channels, channels)
        self.conv_v = PointwiseConv(channels, channels)
        self.conv_o = PointwiseConv(channels, channels)
        self.emb_rel_k = mx.zeros((1, 2 * window_size + 1, self.k_channels))
        self.emb_rel_v = mx.zeros((1, 2 * window_size + 1, self.k_channels))

    def _heads(self, x: mx.array) -> mx.array:
        b, t, _ = x.shape
        return x.reshape(b, t, self.n_heads, self.k_channels).transpose(0, 2, 1, 3)  # (B, H, T, d)

    def __call__(self, x: mx.array, attn_mask: mx.array | None) -> mx.array:
        """x: (B, T, C); attn_mask: (B, 1, T, T) of 0/1, or None when nothing is masked."""
        b, t, c = x.shape
        w = self.window_size
        q = self._heads(self.conv_q(x)) / math.sqrt(self.k_channels)
        k = self._heads(self.conv_k(x))
        v = self._heads(self.conv_v(x))
        rel_k = q @ self.emb_rel_k[0].T  # (B, H, T, 2w+1): query · embedding of each offset
        k_t = k.transpose(0, 1, 3, 2)
        outs = []
        for r0 in range(0, t, ATTENTION_ROWS):  # query rows in blocks: memory linear in T
            r1 = min(r0 + ATTENTION_ROWS, t)
            # query r0 + i sees offsets −w..w at key columns r0 − w + i .. r0 + w + i
            rel = _columns(band_to_rows(rel_k[:, :, r0:r1]), w - r0, w - r0 + t, r1 - r0 + 2 * w)
            scores = q[:, :, r0:r1] @ k_t + rel  # (B, H, n, T)
            if attn_mask is not None:
                scores = mx.where(attn_mask[:, :, r0:r1] == 0, MASKED_SCORE, scores)
            p = forms.ops().softmax(scores)
            out = p @ v + rows_to_band(_columns(p, r0 - w, r1 + w, t), 2 * w + 1) @ self.emb_rel_v[0]
            if r1 < t or r0 > 0:
                mx.eval(out)  # one block's score matrices at a time
            outs.append(out)
        out = outs[0] if len(outs) == 1 else mx.concatenate(outs, axis=2)
        out = out.transpose(0, 2, 1, 3).reshape(b, t, c)  # channel = head·d + i, as the reference
        return self.conv_o(out)

    def forward_numpy(self, x: np.ndarray) -> np.ndarray:
        """The unmasked attention in numpy: (B, T, C) -> (B, T, C)."""
        q = _pointwise_numpy(self.conv_q, x)
        q *= np.float32(1 / math.sqrt(self.k_channels))
        k, v = _pointwise_numpy(self.conv_k, x), _pointwise_numpy(self.conv_v, x)
        return _pointwise_numpy(self.conv_o, self._attend_numpy(q, k, v))

    def _attend_numpy(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The unmasked attention of (B, T, C) projections (q scaled) in numpy: (B, T, C) before conv_o.

        MLX's CPU backend runs the element-wise and copy passes over the (rows, T) score blocks on
        one thread at a fraction of numpy's speed. Here each block of query rows is one buffer with ``window``
        spare columns on both sides: the relative-position logits are added along its diagonal
        band through a strided view, the out-of-range keys are −inf, exp runs in place, and
        ``[v | 1]`` gives Σ p·v and the row sums from one product; the relative-position values
        are read from the same band. Normalising the (rows, d) results, not the scores, changes
        rounding only.
        """
        b, t, c = q.shape
        d, w = self.k_channels, self.window_size
        ek, ev = np.asarray(self.emb_rel_k[0]), np.asarray(self.emb_rel_v[0])  # (2w + 1, d)
        span = t + 2 * w
        rows = min(ATTENTION_ROWS, t)
        scores = np.empty((rows, span), np.float32)
        k_pad = np.zeros((d, span), np.float32)
        v_ones = np.ones((t, d + 1), np.float32)
        out = np.empty((b, t, c), np.float32)
        for i in range(b):
            for j in range(self.n_heads):
                cols = slice(j * d, (j + 1) * d)
                k_pad[:, w: w + t] = k[i, :, cols].T
                v_ones[:, :d] = v[i, :, cols]
                rel = q[i, :, cols] @ ek.T  # (T, 2w + 1): each query against each offset's embedding
                for r0 in range(0, t, rows):
                    n = min(rows, t - r0)
                    s = scores[:n]
                    np.matmul(q[i, r0: r0 + n, cols], k_pad, out=s)
                    s[:, :w] = -np.inf
                    s[:, w + t:] = -np.inf
                    # query r0 + m sees offsets −w..w at columns r0 + m .. r0 + m + 2w
                    band = np.lib.stride_tricks.as_strided(s.reshape(-1)[r0:], (n, 2 * w + 1),
                                                           ((span + 1) * 4, 4), writeable=True)
                    band += rel[r0: r0 + n]
                    s -= s.max(axis=1, keepdims=True)
                    np.exp(s, out=s)
                    weighted = s[:, w: w + t] @ v_ones  # (n, d + 1): Σ e·v and Σ e
                    weighted[:, :d] += band @ ev
                    np.divide(weighted[:, :d], weighted[:, d:], out=out[i, r0: r0 + n, cols])
        return out


class FFN(nn.Module):
    """conv(k) → ReLU → conv(k), with 'same' padding (left (k−1)//2, right k//2) and masking."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv_1 = _Conv(channels, filter_channels, kernel_size)
        self.conv_2 = _Conv(filter_channels, channels, kernel_size)

    def _pad(self, x: mx.array) -> mx.array:
        k = self.kernel_size
        return x if k == 1 else mx.pad(x, [(0, 0), ((k - 1) // 2, k // 2), (0, 0)])

    def __call__(self, x: mx.array, x_mask: mx.array) -> mx.array:
        x = self.conv_1(self._pad(x * x_mask))
        x = mx.maximum(x, 0)
        x = self.conv_2(self._pad(x * x_mask))
        return x * x_mask

    def forward_numpy(self, x: np.ndarray) -> np.ndarray:
        """Unmasked (every frame valid): (B, T, C) -> (B, T, C)."""
        h = _conv_numpy(self.conv_1, x, self.kernel_size)
        np.maximum(h, 0, out=h)
        return _conv_numpy(self.conv_2, h, self.kernel_size)


def _pointwise_numpy(conv: PointwiseConv, x: np.ndarray) -> np.ndarray:
    y = x @ np.asarray(conv.weight)[:, 0, :].T  # a view of MLX's weight; BLAS reads it transposed
    y += np.asarray(conv.bias)
    return y


def _conv_numpy(conv: "_Conv", x: np.ndarray, k: int) -> np.ndarray:
    """The FFN's 'same' convolution (left (k−1)//2, right k//2 zeros) as k accumulating GEMMs."""
    w = np.asarray(conv.weight)  # (out, k, in)
    b, t, _ = x.shape
    xp = np.pad(x, ((0, 0), ((k - 1) // 2, k // 2), (0, 0))) if k > 1 else x
    y = np.empty((b, t, w.shape[0]), np.float32)
    for i in range(b):
        y[i] = xp[i, :t] @ w[:, 0].T
        for j in range(1, k):
            y[i] += xp[i, j: j + t] @ w[:, j].T
    y += np.asarray(conv.bias)
    return y


class _Conv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.weight = mx.zeros((out_channels, kernel_size, in_channels))
        self.bias = mx.zeros((out_channels,))

    def __call__(self, x: mx.array) -> mx.array:
        return forms.ops().conv1d(x, self.weight, self.bias)


class Encoder(nn.Module):
    """Post-LN transformer: x = LN(x + attn(x)); x = LN(x + ffn(x)), masked."""

    def __init__(self, hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int,
                 kernel_size: int, window_size: int = 10):
        super().__init__()
        self.attn_layers = [MultiHeadAttention(hidden_channels, n_heads, window_size) for _ in range(n_layers)]
        self.norm_layers_1 = [ChannelLayerNorm(hidden_channels) for _ in range(n_layers)]
        self.ffn_layers = [FFN(hidden_channels, filter_channels, kernel_size) for _ in range(n_layers)]
        self.norm_layers_2 = [ChannelLayerNorm(hidden_channels) for _ in range(n_layers)]

    def __call__(self, x: mx.array, x_mask: mx.array) -> mx.array:
        """x: (B, T, C); x_mask: (B, T, 1)."""
        m = x_mask[..., 0]
        # every position valid (one sequence, or equal lengths): masking would change nothing
        attn_mask = None if bool(mx.all(m > 0)) else (m[:, :, None] * m[:, None, :])[:, None]  # (B, 1, T, T)
        if attn_mask is None and forms.is_cpu():
            return mx.array(self.forward_numpy(np.array(x, np.float32)))
        x = x * x_mask
        for attn, norm1, ffn, norm2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers,
                                           self.norm_layers_2):
            x = norm1(x + attn(x, attn_mask))
            x = norm2(x + ffn(x, x_mask))
        return x * x_mask

    def forward_numpy(self, x: np.ndarray) -> np.ndarray:
        """Every frame valid, on the CPU: the whole stack in numpy (B, T, C) -> (B, T, C).

        Measured for 32 s of a v2 voice's six layers: 1.1 s in MLX, 0.85 s with only the
        attention core in numpy (numpy's BLAS threads, still spinning after each call, slow the
        MLX matmul that follows), 0.4 s all in numpy.
        """
        for attn, norm1, ffn, norm2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers,
                                           self.norm_layers_2):
            y = attn.forward_numpy(x)
            y += x
            x = layer_norm_numpy(y, norm1.gamma, norm1.beta, norm1.eps, inplace=True)
            y = ffn.forward_numpy(x)
            y += x
            x = layer_norm_numpy(y, norm2.gamma, norm2.beta, norm2.eps, inplace=True)
        return x
