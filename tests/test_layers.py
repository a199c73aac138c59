"""The convolutions of every form against direct numpy definitions of the PyTorch operations."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlx_rvc import forms
from mlx_rvc.models.layers import (
    ConvTranspose1d,
    StridedConv1dMono,
    fold_all_weight_norms,
    fold_weight_norm,
    polyphase_weight,
)

# float32 sums of ≤ 16·11 products of O(1) values: rounding stays below ~1e-5 absolute.
ATOL = 1e-4


def conv1d_ref(x, w, *, stride=1, padding=0, dilation=1):
    """PyTorch Conv1d on (T, Cin) with weight (Cout, Cin, K), float64."""
    x = np.pad(x.astype(np.float64), ((padding, padding), (0, 0)))
    cout, cin, k = w.shape
    t_out = (x.shape[0] - dilation * (k - 1) - 1) // stride + 1
    y = np.zeros((t_out, cout))
    for t in range(t_out):
        for j in range(k):
            y[t] += x[t * stride + j * dilation] @ w[:, :, j].T
    return y


def conv_transpose1d_ref(x, w, *, stride, padding):
    """PyTorch ConvTranspose1d on (T, Cin) with weight (Cin, Cout, K), float64."""
    t, _ = x.shape
    _, cout, k = w.shape
    full = np.zeros(((t - 1) * stride + k, cout))
    for i in range(t):
        for j in range(k):
            full[i * stride + j] += x[i] @ w[:, :, j]
    return full[padding: full.shape[0] - padding]


@pytest.mark.parametrize("k,d,t", [(3, 1, 17), (3, 3, 17), (7, 5, 40), (11, 5, 9), (11, 3, 64), (5, 2, 1)])
def test_dilated_conv_matches_definition(k, d, t, form):
    rng = np.random.default_rng(k * 100 + d)
    x = rng.standard_normal((t, 6)).astype(np.float32)
    w = rng.standard_normal((4, 6, k)).astype(np.float32)
    pad = d * (k - 1) // 2
    b = rng.standard_normal(4).astype(np.float32)
    y = forms.ops().conv1d(mx.array(np.stack([x, -x])), mx.array(w.transpose(0, 2, 1)), mx.array(b), dilation=d, padding=pad)
    ref = conv1d_ref(x, w, padding=pad, dilation=d)
    np.testing.assert_allclose(np.asarray(y[0]), ref + b, atol=ATOL)
    np.testing.assert_allclose(np.asarray(y[1]), -ref + b, atol=ATOL)


# (stride, kernel) pairs of every RVC rate: 32k v1/v2, 40k, 48k v1/v2
@pytest.mark.parametrize("u,k", [(10, 16), (4, 16), (2, 4), (8, 16), (10, 20), (6, 16), (12, 24), (3, 7)])
def test_polyphase_transposed_conv_matches_definition(u, k, form):
    rng = np.random.default_rng(u * 31 + k)
    x = rng.standard_normal((13, 5)).astype(np.float32)
    w = rng.standard_normal((5, 3, k)).astype(np.float32)
    pad = (k - u) // 2
    layer = ConvTranspose1d(5, 3, k, u, pad)
    layer.weight = mx.array(polyphase_weight(w, u))
    layer.bias = mx.zeros((3,))
    y = layer(mx.array(x[None]))
    np.testing.assert_allclose(np.asarray(y[0]), conv_transpose1d_ref(x, w, stride=u, padding=pad), atol=ATOL)


@pytest.mark.parametrize("s,n", [(480, 4800), (40, 800), (2, 50), (6, 600), (8, 96)])
def test_strided_mono_conv_matches_definition(s, n):
    rng = np.random.default_rng(s)
    x = rng.standard_normal((n, 1)).astype(np.float32)
    w = rng.standard_normal((4, 1, 2 * s)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    layer = StridedConv1dMono(4, s)
    layer.weight = mx.array(w.transpose(0, 2, 1))
    layer.bias = mx.array(b)
    y = layer(mx.array(x[None]))
    ref = conv1d_ref(x, w, stride=s, padding=s // 2) + b
    np.testing.assert_allclose(np.asarray(y[0]), ref, atol=ATOL * np.sqrt(s))


def test_weight_norm_folds_over_dim0_for_conv_and_transposed_conv():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((4, 3, 5)).astype(np.float32)
    g = rng.uniform(0.5, 2, (4, 1, 1)).astype(np.float32)
    w = fold_weight_norm(g, v)
    np.testing.assert_allclose(np.linalg.norm(w.reshape(4, -1), axis=1), g.ravel(), rtol=1e-6)
    # HuBERT's positional conv normalises over the kernel axis (g of shape (1, 1, K))
    gk = rng.uniform(0.5, 2, (1, 1, 5)).astype(np.float32)
    wk = fold_weight_norm(gk, v)
    np.testing.assert_allclose(np.linalg.norm(wk.reshape(-1, 5), axis=0), gk.ravel(), rtol=1e-6)


def test_fold_all_weight_norms_handles_both_namings():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((2, 2, 3)).astype(np.float32)
    g = np.ones((2, 1, 1), np.float32)
    out = fold_all_weight_norms({
        "a.weight_g": g, "a.weight_v": v, "a.bias": np.zeros(2, np.float32),
        "b.parametrizations.weight.original0": g, "b.parametrizations.weight.original1": v,
    })
    assert sorted(out) == ["a.bias", "a.weight", "b.weight"]
    np.testing.assert_array_equal(out["a.weight"], out["b.weight"])
    with pytest.raises(KeyError):
        fold_all_weight_norms({"a.weight_g": g})
