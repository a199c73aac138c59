"""The CPU form of HuBERT / ContentVec: the whole model in float32 numpy (BLAS matrix products,
SIMD element-wise loops over cache-sized pieces on up to four threads).

:class:`mlx_rvc.models.hubert.HubertModel` states the network in MLX and, when the CPU form is
active, hands its forward pass to :func:`hidden_states`. MLX's CPU backend runs element-wise
kernels (GELU's erf, softmax's exp) on one thread, several times slower than numpy's; and mixing
MLX's BLAS with numpy's within a layer halves the next MLX matmul's speed (numpy's OpenBLAS
threads keep spinning: measured 30 -> 60 ms). Both forms are checked against the reference
fixtures and against each other.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from ..dsp.frames import strided_frames
from .cpu import layer_norm_numpy

if TYPE_CHECKING:
    import mlx.core as mx
    import mlx.nn as nn

    from ..models.hubert import (Attention, EncoderLayer, FeatureExtractor, FeatureProjection, FeedForward,
                                 HubertModel, PositionalConv)

# |score| below which the softmax's exp needs no max shift: e^±60 is a normal float32, and the
# row sums and products with v are further capped by the key count and max |v| (see attention)
SAFE_LOGIT = 60.0
_FLOAT32_MAX_LOG = float(np.log(np.finfo(np.float32).max))  # 88.7
ATTENTION_ROWS = 2048  # query rows per score block (41 s of audio in one block; 8 MB × T/1000)
POS_CONV_FFT_SIZE = 256  # per overlap-save block; N − K + 1 = 129 output frames per block at K = 128


# The elementwise work runs in numpy: MLX's CPU backend evaluates elementwise kernels
# on one thread at ~120 M elements/s for a fused erf-GELU, numpy's SIMD loops on cache-sized
# pieces at ~400 M/s per thread. HuBERT-base applies GELU to ~150 M values per 30 s of audio.
_ERFC_P = 0.3275911  # Abramowitz & Stegun 7.1.26: erfc(z) ≈ poly(t)·exp(−z²), t = 1/(1 + p·z), |error| ≤ 1.5e-7
_ERFC_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_GELU_PIECE = 65536  # values per piece (per-call overhead vs the 1 MiB L2 cache: measured best of 32 K, 64 K, 128 K)
_THREADS = max(1, min(4, os.cpu_count() or 1))
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool)


def _in_threads(fn, starts) -> None:
    """fn(start) for each start, on the shared worker threads (numpy's loops release the GIL).

    The pool is remade in a forked child, whose copy of the parent's pool has no threads.
    """
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(_THREADS, thread_name_prefix="mlx-rvc-numpy"))
    list(_pool[1].map(fn, starts))


_ERFC_A_HALF = tuple(-0.5 * a for a in _ERFC_A)  # the −½ of the formula below, folded into the polynomial


def _gelu_piece(x: np.ndarray, out: np.ndarray, t: np.ndarray, e: np.ndarray, a: np.ndarray) -> None:
    """out = x·Φ(x) for a 1-D float32 piece; t, e, a: scratch of the same length.

    x·Φ(x) = max(x, 0) − ½·|x|·erfc(|x|/√2) for either sign, so the tails need no branch.
    """
    np.abs(x, out=a)
    np.multiply(a, _ERFC_P * 0.7071067811865476, out=t)  # p·z, z = |x|/√2
    t += 1.0
    np.reciprocal(t, out=t)
    np.multiply(a, a, out=e)
    e *= -0.5
    np.exp(e, out=e)  # exp(−z²)
    np.multiply(t, _ERFC_A_HALF[4], out=out)
    for c in _ERFC_A_HALF[3::-1]:
        out += c
        out *= t
    out *= e  # −½·erfc(z)
    out *= a
    np.maximum(x, 0.0, out=a)
    out += a


def gelu_numpy(x: np.ndarray, bias: np.ndarray | None = None, *, inplace: bool = False) -> np.ndarray:
    """GELU(x + bias) (exact erf form) in float32 numpy, ≤ 3.4e-7 from float64 (measured).

    Works piece by piece on whole rows so that every piece stays in cache; the bias (over the
    last axis) is added to a piece just before its GELU. ``inplace`` writes the result over
    ``x``, sparing a fresh allocation (page faults cost ~0.25 ms per MB here). Pieces are
    shared among up to 4 threads.
    """
    x = np.ascontiguousarray(x, np.float32)
    if x.ndim == 0:
        raise ValueError("gelu_numpy needs an array with a channel axis")
    rows_in = x.reshape(-1, x.shape[-1])
    n_rows, width = rows_in.shape
    out = x if inplace else np.empty_like(x)
    rows_out = out.reshape(-1, width)
    step = max(1, _GELU_PIECE // width)  # rows per piece

    def run(lo: int, hi: int) -> None:
        z = np.empty((step, width), np.float32)
        t, e, a = (np.empty(step * width, np.float32) for _ in range(3))
        for r0 in range(lo, hi, step):
            r1 = min(r0 + step, hi)
            zp = z[: r1 - r0]
            if bias is not None:
                np.add(rows_in[r0:r1], bias, out=zp)
            else:
                zp[...] = rows_in[r0:r1]  # a copy: the result may overwrite x
            m = zp.size
            _gelu_piece(zp.reshape(-1), rows_out[r0:r1].reshape(-1), t[:m], e[:m], a[:m])

    share = -(-n_rows // _THREADS)
    if _THREADS == 1 or share < 4 * step:
        run(0, n_rows)
        return out
    _in_threads(lambda lo: run(lo, min(lo + share, n_rows)), range(0, n_rows, share))
    return out


def _exp_rows(scores: np.ndarray, *, shift: bool) -> None:
    """exp(scores − (row max if shift)) in place, on cache-sized row blocks over the threads."""
    rows, width = scores.shape
    step = max(1, _GELU_PIECE // width)

    def run(lo: int, hi: int) -> None:
        for r0 in range(lo, hi, step):
            block = scores[r0:min(r0 + step, hi)]
            if shift:
                block -= block.max(axis=-1, keepdims=True)
            np.exp(block, out=block)

    share = -(-rows // _THREADS)
    if _THREADS == 1 or share < 2 * step:
        run(0, rows)
    else:
        _in_threads(lambda lo: run(lo, min(lo + share, rows)), range(0, rows, share))


def linear(layer: "nn.Linear", x: np.ndarray) -> np.ndarray:
    """An nn.Linear on numpy rows (the weight read in place from MLX's memory)."""
    y = x @ np.asarray(layer.weight).T  # the weight is a view of MLX's memory, no copy
    if "bias" in layer:
        y += np.asarray(layer.bias)
    return y


def _layer_norm(ln: "nn.LayerNorm", x: np.ndarray) -> np.ndarray:
    return layer_norm_numpy(x, ln.weight, ln.bias, ln.eps)


def _extractor_block(fe: "FeatureExtractor", audio: np.ndarray, lo: int, hi: int, w0: np.ndarray, b0: np.ndarray,
                     work: dict[str, np.ndarray]) -> np.ndarray:
    """One block in numpy. ``work`` keeps each layer's buffers from block to block: fresh
    arrays of this size cost page faults (~0.25 ms per MB) on every block."""

    def buffer(key: str, rows: int, cols: int) -> np.ndarray:
        buf = work.get(key)
        if buf is None or buf.shape[0] < rows or buf.shape[1] != cols:
            buf = work[key] = np.empty((rows, cols), np.float32)
        return buf[:rows]

    k0, s0 = fe._k[0], fe._s[0]
    frames = strided_frames(audio[lo * s0: (hi - 1) * s0 + k0, None], k0, s0, hi - lo)
    h = np.matmul(frames, w0, out=buffer("out0", hi - lo, w0.shape[1]))
    h = gelu_numpy(h, b0, inplace=True)
    for i, (layer, k, s) in enumerate(zip(fe.conv_layers[1:], fe._k[1:], fe._s[1:]), start=1):
        w = np.asarray(layer.conv.weight)  # (out, k, in): rows of w.reshape(out, k·in) are tap-major
        rows = (h.shape[0] - k) // s + 1
        frames = strided_frames(h, k, s, rows)
        if k != s:  # overlapping windows: BLAS needs them laid out
            laid = buffer(f"frames{i}", rows, frames.shape[1])
            np.copyto(laid, frames)
            frames = laid
        h = np.matmul(frames, w.reshape(w.shape[0], -1).T, out=buffer(f"out{i}", rows, w.shape[0]))
        h = gelu_numpy(h, np.asarray(layer.conv.bias) if "bias" in layer.conv else None, inplace=True)
    return h.copy()  # the buffer is reused by the next block


def feature_extractor(fe: "FeatureExtractor", audio: np.ndarray) -> np.ndarray:
    """(B, N) waveform -> (B, frames, conv_dim[-1]) in numpy."""
    work: dict[str, np.ndarray] = {}
    blocks = fe._run(np.ascontiguousarray(audio, np.float32),
                       lambda *args: _extractor_block(fe, *args, work))
    return np.stack([np.concatenate(bl) for bl in blocks])


def feature_projection(fp: "FeatureProjection", x: np.ndarray) -> np.ndarray:
    return linear(fp.projection, _layer_norm(fp.layer_norm, x))


class _SpectralWeight:
    """The positional kernel in the frequency domain, tied to the MLX weight it was made from."""

    def __init__(self, source: mx.array, spectrum: np.ndarray):
        self.source = source  # kept alive so an identity check detects a reloaded weight
        self.spectrum = spectrum


def _kernel_spectrum(pc: "PositionalConv", n: int) -> np.ndarray:
    """conj(rfft(kernel)) over taps, (n/2+1, G, in_g, out_g) complex64, computed once per weight."""
    cached = getattr(pc, "_spectral", None)
    if cached is None or cached.source is not pc.weight or cached.spectrum.shape[0] != n // 2 + 1:
        w = np.asarray(pc.weight, np.float64)
        spectrum = np.conj(np.fft.rfft(w, n=n, axis=0)).astype(np.complex64)
        cached = pc._spectral = _SpectralWeight(pc.weight, spectrum)
    return cached.spectrum


def positional_conv(pc: "PositionalConv", x: np.ndarray) -> np.ndarray:
    """The grouped positional convolution + GELU by FFT overlap-save: HuBERT-base's kernel is 128
    taps of 16 groups of 48x48 matrices, 14 GFLOP for 30 s computed directly (1.6 s of small
    matmuls on MLX's CPU backend); in the frequency domain ~0.5 GFLOP (measured 0.03 s), and the
    float64 transforms add ~2e-7 relative error."""
    b, t, h = x.shape
    k, g = pc.weight.shape[0], pc.groups
    t_out = pc._out_frames(t)
    n = max(POS_CONV_FFT_SIZE, 1 << (2 * k - 1).bit_length())
    span = n - k + 1  # output frames per block (no circular wrap-around reaches them)
    blocks = -(-t_out // span)
    xp = np.zeros((b, blocks * span + k - 1, h), np.float32)
    xp[:, k // 2: k // 2 + t] = x
    starts = np.arange(blocks)[:, None] * span + np.arange(n)[None]
    seg = xp[:, starts]  # (B, blocks, N, H): overlapping windows of the padded input
    # correlation theorem: y[t] = Σ_j x[t+j]·w[j]  <=>  Y = X · conj(W), channels mixed per bin and group
    spec = np.fft.rfft(seg, axis=2).astype(np.complex64)  # (B, blocks, F, H)
    spec = spec.reshape(b * blocks, -1, g, h // g).transpose(1, 2, 0, 3)  # (F, G, B·blocks, in_g)
    mixed = spec @ _kernel_spectrum(pc, n)  # (F, G, B·blocks, out_g)
    mixed = mixed.transpose(2, 0, 1, 3).reshape(b, blocks, -1, h)
    y = np.fft.irfft(mixed, n=n, axis=2)[:, :, :span]  # (B, blocks, span, H)
    y = y.reshape(b, blocks * span, h)[:, :t_out].astype(np.float32)
    return gelu_numpy(y, np.asarray(pc.bias), inplace=True)


def attention(att: "Attention", x: np.ndarray) -> np.ndarray:
    """softmax(q·kᵀ)·v per head on blocks of query rows (memory: ROWS × T scores).

    The unnormalised exp(scores) multiply [v | 1]: the extra column of ones gives the row
    sums from the same GEMM (one pass over the (rows, T) scores fewer), and normalising the
    (rows, head_dim) product is cheaper than normalising the probabilities.
    """
    q = linear(att.q_proj, x)
    q *= att.head_dim**-0.5
    k, v = linear(att.k_proj, x), linear(att.v_proj, x)
    b, t, h = x.shape
    d = att.head_dim
    out = np.empty((b, t, h), np.float32)
    q_norm = np.sqrt(np.einsum("bthd,bthd->bth", *(q.reshape(b, t, att.n_heads, d),) * 2))  # (B, T, heads)
    k_norm = np.sqrt(np.einsum("bthd,bthd->bth", *(k.reshape(b, t, att.n_heads, d),) * 2)).max(axis=1)
    v_ones = np.ones((t, d + 1), np.float32)
    for i in range(b):
        for j in range(att.n_heads):
            cols = slice(j * d, (j + 1) * d)
            kt = k[i, :, cols].T  # (d, T), a strided view BLAS reads as transposed
            v_ones[:, :d] = v[i, :, cols]
            # Softmax is shift-invariant; the max is subtracted only to keep exp finite.
            # When Cauchy-Schwarz bounds every |score| so that exp, the row sums and the
            # products with v stay in float32's normal range, the shift is skipped: two
            # passes over the (rows, T) scores saved.
            v_max = float(np.abs(v_ones).max())
            limit = min(SAFE_LOGIT, _FLOAT32_MAX_LOG - np.log(t * v_max))
            for r0 in range(0, t, ATTENTION_ROWS):
                r1 = min(r0 + ATTENTION_ROWS, t)
                scores = q[i, r0:r1, cols] @ kt  # (rows, T)
                _exp_rows(scores, shift=q_norm[i, r0:r1, j].max() * k_norm[i, j] >= limit)
                weighted = scores @ v_ones  # (rows, d + 1): Σ p·v and Σ p
                np.divide(weighted[:, :d], weighted[:, d:], out=out[i, r0:r1, cols])
    return linear(att.out_proj, out)


def feed_forward(ff: "FeedForward", x: np.ndarray) -> np.ndarray:
    dense = ff.intermediate_dense
    h = gelu_numpy(x @ np.asarray(dense.weight).T, np.asarray(dense.bias), inplace=True)
    return linear(ff.output_dense, h)


def encoder_layer(layer: "EncoderLayer", x: np.ndarray) -> np.ndarray:
    y = attention(layer.attention, x)
    y += x
    x = _layer_norm(layer.layer_norm, y)
    y = feed_forward(layer.feed_forward, x)
    y += x
    return _layer_norm(layer.final_layer_norm, y)


def hidden_states(model: "HubertModel", wav: np.ndarray, last: int, trace: dict | None) -> list[np.ndarray]:
    """:meth:`HubertModel.__call__` in numpy: hidden states 0..last of a (B, N) waveform."""
    enc = model.encoder
    feats = feature_extractor(model.feature_extractor, np.asarray(wav, np.float32))
    x = feature_projection(model.feature_projection, feats)
    pos = positional_conv(enc.pos_conv_embed.conv, x)
    if trace is not None:
        trace.update(conv_features=feats, projected_features=x, pos_conv_out=pos)
    x = _layer_norm(enc.layer_norm, x + pos)
    states = [x]
    for layer in enc.layers[:last]:
        x = encoder_layer(layer, x)
        states.append(x)
    return states
