"""FCPE's CPU form: the network of :mod:`mlx_rvc.models.fcpe` in float32 numpy.

On MLX's CPU backend FCPE is slow where it is not a matrix product: element-wise kernels (GLU's and
SiLU's sigmoids, the norms) run on one thread without SIMD, and the 31-tap depthwise convolution
goes through the generic grouped-convolution path. Measured on 10 s (1000 frames, 2-core x86, MLX
0.32, loaded machine): depthwise conv 0.75 s per layer in MLX, 0.03 s as 31 shifted numpy
multiply-adds in cache-sized blocks; GLU 0.14 s in MLX. Here the pointwise convolutions and the input convolutions
(as three stacked shifts) are BLAS matrix products and everything else numpy's SIMD loops.

The encoder runs in blocks of :data:`BLOCK_FRAMES` with :data:`CONTEXT_FRAMES` of real context on
each side (its six 31-tap convolutions reach 90 frames), so memory stays bounded for long inputs and
every kept frame sees what one pass would show it; the input stack's GroupNorm takes its statistics
over the whole clip first, as the reference does.
"""

from __future__ import annotations

import numpy as np

from .cpu import layer_norm_numpy

BLOCK_FRAMES = 2000  # 20 s of frames per encoder block
CONTEXT_FRAMES = 96  # ≥ 6 layers × 15 frames of depthwise reach
DEPTHWISE_BLOCK = 64  # frames per cache-resident block of the depthwise convolution


def _sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.negative(x, out=out)
    with np.errstate(over="ignore"):  # exp(>88) = inf in float32: 1 / (1 + inf) = 0, the right limit
        np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


def _conv3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """'same' 3-tap conv as one GEMM over the three shifts stacked on channels. x (T, in), w (out, 3, in)."""
    xp = np.pad(x, ((1, 1), (0, 0)))
    cols = np.concatenate([xp[:-2], xp[1:-1], xp[2:]], axis=1)  # (T, 3·in)
    return cols @ w.reshape(w.shape[0], -1).T + b


def _depthwise(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """'same' depthwise conv, zero-padded: x (T, C), w (C, K).

    Shift-and-add over time blocks of :data:`DEPTHWISE_BLOCK` frames, so each block's taps stay in
    cache (measured, 1000 × 1024 × 31 taps: 0.115 s whole, 0.029 s in blocks of 64).
    """
    k = w.shape[1]
    t = x.shape[0]
    xp = np.pad(x, ((k // 2, k // 2), (0, 0)))
    taps = np.ascontiguousarray(w.T)  # (K, C)
    out = np.empty_like(x)
    for s in range(0, t, DEPTHWISE_BLOCK):
        e = min(s + DEPTHWISE_BLOCK, t)
        acc = out[s:e]
        np.multiply(xp[s:e], taps[0], out=acc)
        for j in range(1, k):
            acc += xp[s + j:e + j] * taps[j]
        acc += b
    return out


class FcpeNumpy:
    """The same computation as :class:`mlx_rvc.models.fcpe.Fcpe` on numpy arrays (weights copied once)."""

    def __init__(self, model):
        from mlx.utils import tree_flatten

        self.cfg = model.cfg
        self.p = {k: np.array(v, np.float32) for k, v in tree_flatten(model.parameters())}

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        """(T, n_mels) log-mel -> (T, out_dims) salience."""
        p = self.p
        x = _conv3(np.asarray(mel, np.float32), p["input_stack.0.weight"], p["input_stack.0.bias"])
        t, c = x.shape
        g = x.reshape(t, 4, c // 4)  # GroupNorm over (time, channels of the group)
        mean = g.mean(axis=(0, 2), dtype=np.float64, keepdims=True)
        var = np.square(g - mean.astype(np.float32)).mean(axis=(0, 2), dtype=np.float64, keepdims=True)
        g = (g - mean.astype(np.float32)) * (1.0 / np.sqrt(var + 1e-5)).astype(np.float32)
        x = g.reshape(t, c) * p["input_stack.1.weight"] + p["input_stack.1.bias"]
        x = np.where(x >= 0, x, np.float32(0.01) * x)
        x = _conv3(x, p["input_stack.3.weight"], p["input_stack.3.bias"])
        out = np.empty((t, self.cfg.out_dims), np.float32)
        for s in range(0, t, BLOCK_FRAMES):
            e = min(s + BLOCK_FRAMES, t)
            lo, hi = max(0, s - CONTEXT_FRAMES), min(t, e + CONTEXT_FRAMES)
            h = self._encoder(x[lo:hi].copy())[s - lo: e - lo]
            h = layer_norm_numpy(h, p["norm.weight"], p["norm.bias"], 1e-5, inplace=True)
            out[s:e] = _sigmoid(h @ p["output_proj.weight"].T + p["output_proj.bias"])
        return out

    def _encoder(self, x: np.ndarray) -> np.ndarray:
        p = self.p
        half = x.shape[1] * 2
        for i in range(self.cfg.n_layers):
            k = f"net.encoder_layers.{i}.conformer.net."
            h = layer_norm_numpy(x, p[k + "0.weight"], p[k + "0.bias"], 1e-5)
            h = h @ p[k + "2.weight"].T + p[k + "2.bias"]  # (T, 2·inner)
            a = h[:, :half] * _sigmoid(h[:, half:])  # GLU
            a = _depthwise(a, p[k + "4.conv.weight"][:, :, 0], p[k + "4.conv.bias"])
            a *= _sigmoid(a)  # SiLU
            x = x + (a @ p[k + "6.weight"].T + p[k + "6.bias"])
        return x
