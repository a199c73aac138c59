"""CREPE's CPU form: the network of :mod:`mlx_rvc.models.crepe` in float32 numpy.

MLX's CPU convolution is slow on CREPE's shapes (a 512-tap conv on one channel, then 64-tap convs
over up to 1024 channels): measured 13 s per second of audio for the full model (2-core x86, MLX
0.32, loaded machine). Here the convolutions, where the work is (~1.3 GMAC per frame for the full
model, ~0.03 for tiny), are BLAS matrix products: the first conv (one input channel) as one product over its
unfolded input, the 64-tap ones as a sum of one product per tap over the time-shifted input, kept
time-major (time, frames, channels) so that every shifted input is a view (no unfolding: it would
be 64 times the input). ReLU, BatchNorm and pooling are numpy's SIMD loops.
"""

from __future__ import annotations

import numpy as np

from ..models.crepe import FIRST_PAD, N_LAYERS, PAD


class CrepeNumpy:
    """The same computation as :class:`mlx_rvc.models.crepe.Crepe` on numpy arrays (weights copied once)."""

    def __init__(self, model):
        from mlx.utils import tree_flatten

        self.cfg = model.cfg
        p = {k: np.array(v, np.float32) for k, v in tree_flatten(model.parameters())}
        self.layers = []
        for i in range(1, N_LAYERS + 1):
            w = p[f"conv{i}.weight"]  # (out, K, in)
            cols = np.ascontiguousarray(w.transpose(1, 2, 0).reshape(-1, w.shape[0]))  # (K·in, out), tap-major
            self.layers.append((cols, w.shape[1], 4 if i == 1 else 1, FIRST_PAD if i == 1 else PAD, p[f"conv{i}.bias"],
                                p[f"conv{i}_BN.scale"], p[f"conv{i}_BN.shift"]))
        self.classifier = (np.ascontiguousarray(p["classifier.weight"].T), p["classifier.bias"])

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(B, 1024) normalised frames -> (B, n_bins) salience."""
        f = np.asarray(frames, np.float32)
        b = f.shape[0]
        x = None
        for cols_w, k, stride, pad, bias, scale, shift in self.layers:
            if x is None:  # the first conv (one input channel): one product over the unfolded frames
                xp = np.pad(f, ((0, 0), pad))
                length = (xp.shape[1] - k) // stride + 1
                win = np.lib.stride_tricks.sliding_window_view(xp, k, axis=1)[:, ::stride]  # (B, L, K)
                y = (win.reshape(-1, k) @ cols_w).reshape(b, length, -1).transpose(1, 0, 2).copy()  # (L, B, C)
            else:  # 64 taps: a sum of one product per tap; time-major, so each shifted input is a view
                c = x.shape[2]
                xp = np.pad(x, (pad, (0, 0), (0, 0)))
                length = xp.shape[0] - k + 1
                taps = cols_w.reshape(k, c, -1)
                flat = xp.reshape(-1, c)
                y = flat[:length * b] @ taps[0]
                for j in range(1, k):
                    y += flat[j * b:(j + length) * b] @ taps[j]
                y = y.reshape(length, b, -1)
            y += bias
            np.maximum(y, 0, out=y)
            y *= scale
            y += shift
            x = y.reshape(length // 2, 2, b, -1).max(axis=1)  # max-pool 2 along time: (L/2, B, C)
        x = x.transpose(1, 0, 2)  # (B, 4, C): time-major flatten, as the model does
        w, bias = self.classifier
        z = x.reshape(x.shape[0], -1) @ w + bias
        with np.errstate(over="ignore"):  # exp(>88) = inf: 1 / (1 + inf) = 0, the right limit
            return 1.0 / (1.0 + np.exp(-z))
