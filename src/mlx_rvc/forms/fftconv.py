"""Long stride-1 convolutions by FFT overlap-save, channels-last.

A convolution with K taps at dilation d spans S = (K−1)·d + 1 input samples. Cut the padded
input into frames of ``n_fft`` samples that overlap by S − 1; in each frame the circular
convolution equals the linear one on its last L = n_fft − S + 1 outputs. Per frequency bin
the convolution is then one complex (frames × Cin) @ (Cin × Cout) product, batched over the
n_fft/2 + 1 bins, with the kernel spectrum computed once per weight.

Cost per output sample and channel pair: 4·(n_fft/2 + 1)/L real multiplications (a complex
multiply-add is four) instead of K. With n_fft ≈ 8·S that is about 2.3, so a K=11 kernel does
~4.8x fewer GEMM FLOPs and K=7 ~3x fewer, any dilation; K=3 gains nothing. The transforms
(single-threaded in MLX) and the framing copies cost about as much as 1–2 direct taps, which
is why :func:`fft_size` only answers for kernels and channel counts where the whole
convolution was measured faster. Rounding is that of float32 transforms: ~3e-7 relative,
the same order as the direct float32 sum.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

# Measured on 2 s decoder pieces (``benchmarks/bench_decoder.py --tune``: every (K, d) of RVC's
# residual blocks at each transform length, interleaved with the direct form):
# channels -> (fewest taps worth a transform, transform length in kernel spans, shortest, longest).
# At 64–128 channels 256-point transforms were fastest for every dilation (at 128 channels 128
# points for d = 1 are as fast at half the spectrum size). At 256 channels a piece is only ~2,700 samples and every bin
# holds a 0.5 MiB kernel spectrum, so shorter transforms win. At 32 channels the GEMMs are thin
# and the transforms dominate: K=11 alone was up to 1.35x faster, but a whole stage of residual
# blocks was not faster, so 32 (and fewer) channels stay direct.
#
# Not at 256 channels, though it was faster there too: that stage's kernel spectra alone are
# 262 MiB (a 0.5 MiB matrix per bin and convolution), which the 1.5 GB budget of a whole
# conversion cannot hold; 64 and 128 channels take 187 MiB.
FFT_PLAN = {
    64: (7, 8, 256, 256),
    128: (7, 8, 128, 256),
}


def fft_size(kernel_size: int, dilation: int, channels: int) -> int | None:
    """Transform length for a (channels → channels) kernel of ``kernel_size`` taps at ``dilation``.

    Returns ``None`` where the direct convolution was measured faster (short kernels, channel
    counts not in :data:`FFT_PLAN`). Otherwise a power of two of about the planned number of
    kernel spans ((K−1)·d + 1 samples), within the planned bounds.
    """
    plan = FFT_PLAN.get(channels)
    if plan is None or kernel_size < plan[0]:
        return None
    _, spans, shortest, longest = plan
    span = (kernel_size - 1) * dilation + 1
    n = shortest
    while n < spans * span and n < longest:
        n *= 2
    return n


def kernel_spectrum(weight, *, dilation: int, n_fft: int) -> mx.array:
    """Conv weight (Cout, K, Cin) -> (n_fft/2 + 1, Cin, Cout) complex64 spectrum for :func:`fft_conv1d`.

    PyTorch's conv1d is a correlation, ``y[t] = Σ_j w[j]·x[t + j·d]``: as a convolution its
    impulse response is the dilated kernel reversed, ``h[S−1−j·d] = w[j]``, whose spectrum
    is taken here (in float64, rounded once). Only K of the n_fft samples are non-zero, so the
    transform is a (bins, K) x (K, Cin·Cout) product with the K taps' DFT phases: 3-8x faster
    than transforming the zero-padded kernels (a v2 48k decoder's spectra: 0.49 -> 0.19 s) and
    as exact (measured against extended precision, closer than numpy's FFT).
    """
    w = np.asarray(weight, dtype=np.float64)
    cout, k, cin = w.shape
    span = (k - 1) * dilation + 1
    if n_fft < span:
        raise ValueError(f"n_fft {n_fft} is shorter than the kernel span {span}")
    where = span - 1 - dilation * np.arange(k)  # tap j sits at sample S−1−j·d
    cycles = np.outer(np.arange(n_fft // 2 + 1), where) % n_fft  # exact integers: no large angles
    phases = np.exp(-2j * np.pi * cycles / n_fft)  # (bins, K)
    spectrum = phases @ w.transpose(1, 2, 0).reshape(k, cin * cout)
    return mx.array(spectrum.reshape(-1, cin, cout).astype(np.complex64))


def fft_conv1d(x: mx.array, spectrum: mx.array, bias: mx.array | None = None, *, kernel_size: int,
               dilation: int = 1, padding: int = 0) -> mx.array:
    """Same result as :func:`mlx_rvc.models.layers.conv1d`, by overlap-save.

    x: (B, T, Cin); spectrum: (n_fft/2 + 1, Cin, Cout) from :func:`kernel_spectrum` for this
    ``dilation``; bias: (Cout,). Returns (B, T + 2·padding − (K−1)·dilation, Cout).
    """
    b, t, cin = x.shape
    n_fft = 2 * (spectrum.shape[0] - 1)
    cout = spectrum.shape[2]
    span = (kernel_size - 1) * dilation + 1
    hop = n_fft - span + 1  # valid outputs per frame
    t_out = t + 2 * padding - span + 1
    frames = -(-t_out // hop)
    t_pad = (frames - 1) * hop + n_fft
    xp = mx.pad(x, [(0, 0), (padding, t_pad - t - padding), (0, 0)])
    # frame f holds padded samples [f·hop, f·hop + n_fft); time-major so the transform is along axis 0
    xf = mx.as_strided(xp, (n_fft, b, frames, cin), (cin, t_pad * cin, hop * cin, 1))
    z = mx.fft.rfft(xf, axis=0).reshape(-1, b * frames, cin)  # (bins, B·frames, Cin)
    y = mx.fft.irfft(z @ spectrum, n=n_fft, axis=0)[span - 1:]  # (hop, B·frames, Cout)
    y = y.reshape(hop, b, frames, cout).transpose(1, 2, 0, 3)  # (B, frames, hop, Cout)
    y = y + bias if bias is not None else mx.contiguous(y)
    return y.reshape(b, frames * hop, cout)[:, :t_out]


__all__ = ["fft_size", "kernel_spectrum", "fft_conv1d"]
