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
from ..forms import cpu_attention
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
            return mx.array(cpu_attention.encoder(self, np.array(x, np.float32)))
        x = x * x_mask
        for attn, norm1, ffn, norm2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers,
                                           self.norm_layers_2):
            x = norm1(x + attn(x, attn_mask))
            x = norm2(x + ffn(x, x_mask))
        return x * x_mask
