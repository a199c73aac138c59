"""The CPU form of the text encoder: the unmasked transformer stack in float32 numpy.

:class:`mlx_rvc.models.attention.Encoder` states it in MLX and, in the CPU form and when every
frame is valid (always so in the pipeline), hands the stack to :func:`encoder`. Measured for 32 s
of a v2 voice's six layers: 1.1 s in MLX, 0.85 s with only the attention core in numpy (numpy's
BLAS threads, still spinning after each call, slow the MLX matmul that follows), 0.4 s all here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .cpu import layer_norm_numpy

if TYPE_CHECKING:
    from ..models.attention import FFN, Encoder, MultiHeadAttention, PointwiseConv, _Conv


def encoder(enc: "Encoder", x: np.ndarray) -> np.ndarray:
    """:class:`Encoder` with every frame valid: (B, T, C) -> (B, T, C)."""
    for attn, norm1, layer, norm2 in zip(enc.attn_layers, enc.norm_layers_1, enc.ffn_layers,
                                       enc.norm_layers_2):
        y = attention(attn, x)
        y += x
        x = layer_norm_numpy(y, norm1.gamma, norm1.beta, norm1.eps, inplace=True)
        y = ffn(layer, x)
        y += x
        x = layer_norm_numpy(y, norm2.gamma, norm2.beta, norm2.eps, inplace=True)
    return x


def attention(attn: "MultiHeadAttention", x: np.ndarray) -> np.ndarray:
    """The unmasked attention in numpy: (B, T, C) -> (B, T, C)."""
    q = _pointwise(attn.conv_q, x)
    q *= np.float32(1 / math.sqrt(attn.k_channels))
    k, v = _pointwise(attn.conv_k, x), _pointwise(attn.conv_v, x)
    return _pointwise(attn.conv_o, _attend(attn, q, k, v))


def _attend(attn: "MultiHeadAttention", q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
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
    d, w = attn.k_channels, attn.window_size
    ek, ev = np.asarray(attn.emb_rel_k[0]), np.asarray(attn.emb_rel_v[0])  # (2w + 1, d)
    span = t + 2 * w
    from ..models.attention import ATTENTION_ROWS  # the MLX form's blocks: the same rows

    rows = min(ATTENTION_ROWS, t)
    scores = np.empty((rows, span), np.float32)
    k_pad = np.zeros((d, span), np.float32)
    v_ones = np.ones((t, d + 1), np.float32)
    out = np.empty((b, t, c), np.float32)
    for i in range(b):
        for j in range(attn.n_heads):
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


def ffn(layer: "FFN", x: np.ndarray) -> np.ndarray:
    """Unmasked (every frame valid): (B, T, C) -> (B, T, C)."""
    h = _conv(layer.conv_1, x, layer.kernel_size)
    np.maximum(h, 0, out=h)
    return _conv(layer.conv_2, h, layer.kernel_size)


def _pointwise(conv: PointwiseConv, x: np.ndarray) -> np.ndarray:
    y = x @ np.asarray(conv.weight)[:, 0, :].T  # a view of MLX's weight; BLAS reads it transposed
    y += np.asarray(conv.bias)
    return y


def _conv(conv: "_Conv", x: np.ndarray, k: int) -> np.ndarray:
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
