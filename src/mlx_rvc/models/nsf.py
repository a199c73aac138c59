"""RVC's decoders: NSF-HiFiGAN (with the harmonic source) for f0 voices, plain HiFi-GAN otherwise.

Channels-last. Parameter names follow the reference (``dec.ups.N``, ``dec.resblocks.N.convs1.M``,
``dec.noise_convs.N``, ``dec.m_source.l_linear``…); ``ups`` weights are stored in polyphase
layout (see :func:`mlx_rvc.models.layers.polyphase_weight`).

The sine source is computed in numpy: it is cheap (a few passes over the samples) and its two
cumulative sums must match the reference exactly, which accumulates ``torch.cumsum`` of float32
in float64 on the CPU. Doing the same here keeps the phase within float32 rounding of the
reference over minutes of audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .. import forms
from .layers import (
    LRELU_SLOPE,
    Conv1d,
    ConvTranspose1d,
    StridedConv1dMono,
    buffer_cache,
    get_padding,
    leaky_relu,
)

SINE_AMP = 0.1  # amplitude of the sine excitation
NOISE_STD = 0.003  # std of the noise added on voiced samples; unvoiced get SINE_AMP / 3
FINAL_LRELU_SLOPE = 0.01  # the reference's last leaky ReLU uses torch's default slope
# CPU form's piece length: 1 s keeps its largest activation (32 channels x 48k samples at 48 kHz)
# near 6 MB and a piece's working set near 0.1 GB, flat in the audio length; with every stage
# cropped to its reach (Generator.stage_margins) only the first stage recomputes context.
# Measured on 10 s of a v2 48k decoder: 2 s pieces 7.2 s, 1 s pieces 6.8 s one at a time, and
# two at a time (forms.cpu.DECODE_WORKERS) 5.5 s with 1 s pieces, 6.1 s with 0.5 s pieces.
CPU_PIECE_FRAMES = 100
# GPU form: MLX memory a decoded frame holds at the peak, in units of the widest stage's
# activation per frame (channels x samples per frame x 4 bytes): measured on an H200 (MLX 0.32,
# cuDNN convolutions) as 36.9 GiB for one pass over 3000 frames of a v2 48 kHz decoder, whose
# widest stage holds 61 KB per frame: ~200 such activations (convolution workspaces and outputs
# of the whole lazily built graph are alive together).
GPU_FRAME_ACTIVATIONS = 200
DECODE_BUFFER_CACHE = 64 << 20  # bytes of freed MLX buffers kept for reuse while decoding (see buffer_cache);
# 256 MiB measured no faster on a 30 s conversion and 0.2 GB more at its peak


def _nearest_index(n_out: int, n_in: int, upp: int) -> np.ndarray:
    """Source index of each output sample for torch's nearest upsampling by ``scale_factor=upp``.

    torch computes ``floor(i · float32(1/upp))`` in float32; reproduced to land on the same frames.
    """
    scale = np.float32(1.0 / upp)
    idx = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def _linear_align_corners(x: np.ndarray, n_out: int) -> np.ndarray:
    """torch ``interpolate(mode='linear', align_corners=True)`` along axis 1 of (B, T).

    Source positions and weights in float32 as torch computes them; the weighted sum rounded
    once, as torch's fused multiply-add does (two separately rounded products differ by an ulp
    on flat stretches, where the sine source's wrap test then counts a different number of
    phase wraps: measured 2e-4 on the sine of a 48 kHz voice, 3e-8 with one rounding).
    """
    n_in = x.shape[1]
    if n_in == 1 or n_out == 1:
        return np.repeat(x[:, :1], n_out, axis=1)
    scale = np.float32(n_in - 1) / np.float32(n_out - 1)
    src = np.arange(n_out, dtype=np.float32) * scale
    i0 = src.astype(np.int64)
    lam1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    lam0 = np.float32(1) - lam1
    i1 = np.minimum(i0 + 1, n_in - 1)
    return (x[:, i0].astype(np.float64) * lam0 + x[:, i1].astype(np.float64) * lam1).astype(np.float32)


def sine_excitation(f0: np.ndarray, *, upp: int, sample_rate: int, noise: np.ndarray) -> np.ndarray:
    """The reference SineGen (one harmonic): f0 (B, T) Hz at frame rate -> (B, T·upp, 1).

    ``noise`` is the standard-normal draw (B, T·upp, 1) the reference makes with ``randn_like``.
    Unvoiced frames (f0 = 0) give noise of std SINE_AMP/3; voiced ones a sine of amplitude
    SINE_AMP plus noise of std NOISE_STD. The phase is accumulated per frame, upsampled, and
    re-wrapped where the frame-level phase wraps, exactly as the reference does.
    """
    f0 = np.asarray(f0, np.float32)
    b, t = f0.shape
    n = t * upp
    rad = np.mod(f0 / np.float32(sample_rate), np.float32(1))  # cycles per sample, at frame rate
    # the reference's random initial phase is zeroed for the fundamental: nothing to add
    frame_phase = np.cumsum(rad.astype(np.float64), axis=1).astype(np.float32) * np.float32(upp)
    frame_phase = np.mod(_linear_align_corners(frame_phase, n), np.float32(1))
    idx = _nearest_index(n, t, upp)
    rad_up = rad[:, idx]
    shift = np.zeros_like(rad_up)
    shift[:, 1:] = -((frame_phase[:, 1:] - frame_phase[:, :-1]) < 0).astype(np.float32)
    phase = np.cumsum((rad_up + shift).astype(np.float64), axis=1).astype(np.float32)
    sine = np.sin(phase * np.float32(2) * np.float32(np.pi)) * np.float32(SINE_AMP)
    uv = (f0 > 0).astype(np.float32)[:, idx]
    noise_amp = uv * np.float32(NOISE_STD) + (np.float32(1) - uv) * np.float32(SINE_AMP) / np.float32(3)
    noise = np.asarray(noise, np.float32).reshape(b, n)
    return (sine * uv + noise_amp * noise)[..., None].astype(np.float32)


class _Linear1(nn.Module):
    """nn.Linear(1, 1) of the source module (weight (1, 1), bias (1,))."""

    def __init__(self):
        super().__init__()
        self.weight = mx.zeros((1, 1))
        self.bias = mx.zeros((1,))

    def __call__(self, x: mx.array) -> mx.array:
        return x * self.weight[0, 0] + self.bias


class SourceModuleHnNSF(nn.Module):
    """Harmonic source: tanh(linear(sine excitation))."""

    def __init__(self):
        super().__init__()
        self.l_linear = _Linear1()

    def __call__(self, sine_waves: mx.array) -> mx.array:
        return mx.tanh(self.l_linear(sine_waves))


class MonoPointwise(nn.Module):
    """Conv1d(1, out, 1) on a mono signal; weight (out, 1, 1)."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.weight = mx.zeros((out_channels, 1, 1))
        self.bias = mx.zeros((out_channels,))

    def __call__(self, x: mx.array) -> mx.array:
        return x * self.weight[:, 0, 0] + self.bias


def resblock_conv(channels: int, kernel_size: int, dilation: int) -> Conv1d:
    """A residual-block convolution ('same' padding)."""
    return Conv1d(channels, channels, kernel_size, dilation=dilation, padding=get_padding(kernel_size, dilation))


class ResBlock1(nn.Module):
    """Three (dilated conv, conv) pairs with leaky ReLUs and residual adds."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = [resblock_conv(channels, kernel_size, d) for d in dilations]
        self.convs2 = [resblock_conv(channels, kernel_size, 1) for _ in dilations]

    def __call__(self, x: mx.array) -> mx.array:
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = c2(leaky_relu(c1(leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
            x = xt + x
        return x


class ResBlock2(nn.Module):
    """Two dilated convs with leaky ReLUs and residual adds."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs = [resblock_conv(channels, kernel_size, d) for d in dilations]

    def __call__(self, x: mx.array) -> mx.array:
        for c in self.convs:
            x = c(leaky_relu(x, LRELU_SLOPE)) + x
        return x


@dataclass(frozen=True)
class GeneratorConfig:
    initial_channel: int
    resblock: str  # "1" or "2"
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    upsample_rates: tuple[int, ...]
    upsample_initial_channel: int
    upsample_kernel_sizes: tuple[int, ...]
    gin_channels: int
    sample_rate: int
    nsf: bool  # True: NSF-HiFiGAN with harmonic source (f0 voices)

    @property
    def upp(self) -> int:
        """Output samples per input frame."""
        return int(np.prod(self.upsample_rates))


class Generator(nn.Module):
    """HiFi-GAN generator; with ``nsf`` the harmonic source is injected after every upsampling."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        c0 = cfg.upsample_initial_channel
        self.conv_pre = Conv1d(cfg.initial_channel, c0, 7, padding=3)
        block = ResBlock1 if cfg.resblock == "1" else ResBlock2
        self.ups = []
        self.resblocks = []
        if cfg.nsf:
            self.m_source = SourceModuleHnNSF()
            self.noise_convs = []
        rates = cfg.upsample_rates
        for i, (u, k) in enumerate(zip(rates, cfg.upsample_kernel_sizes)):
            ch = c0 // (2 ** (i + 1))
            self.ups.append(ConvTranspose1d(c0 // (2**i), ch, k, u, padding=(k - u) // 2))
            for rk, rd in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes):
                self.resblocks.append(block(ch, rk, tuple(rd)))
            if cfg.nsf:
                rest = int(np.prod(rates[i + 1:])) if i + 1 < len(rates) else 1
                self.noise_convs.append(StridedConv1dMono(ch, rest) if i + 1 < len(rates) else MonoPointwise(ch))
        self.conv_post = Conv1d(ch, 1, 7, padding=3, bias=False)
        if cfg.gin_channels:
            self.cond = Conv1d(cfg.gin_channels, c0, 1)

    def _resblock_reach(self) -> int:
        """Samples on each side the widest residual block reads (two convs per dilation: (k−1)/2·(d + 1))."""
        cfg = self.cfg
        return max(sum((k - 1) // 2 * (d + 1) for d in dil)
                   for k, dil in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes))

    def receptive_radius_frames(self) -> int:
        """How many latent frames on each side can influence an output sample (rounded up).

        Sums each layer's reach, converted to latent frames: conv_pre (k=7), every transposed
        convolution (ceil(K/stride) inputs), the widest residual block (two convolutions per
        dilation: (k−1)/2·(d + 1)), conv_post (k=7). The harmonic source is computed for the
        whole signal, so it adds nothing.
        """
        cfg = self.cfg
        reach = 3.0  # conv_pre, in frames
        rate = 1  # samples per latent frame at the current stage
        res_reach = self._resblock_reach()
        for u, k in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes):
            reach += -(-k // u) / rate
            rate *= u
            reach += res_reach / rate
        reach += 3 / rate  # conv_post
        return int(np.ceil(reach))

    def piece_frames(self) -> int | None:
        """Latent frames per decoder piece for the active form; ``None``: one pass.

        CPU: :data:`CPU_PIECE_FRAMES` (cache-sized pieces on two threads). GPU: as many frames as
        fit the device's memory budget (:func:`mlx_rvc.forms.gpu.memory_budget`), counting
        :data:`GPU_FRAME_ACTIVATIONS` float32 activations of the widest stage per frame.
        """
        if forms.is_cpu():
            return CPU_PIECE_FRAMES
        cfg = self.cfg
        rate, widest = 1, cfg.upsample_initial_channel
        for i, u in enumerate(cfg.upsample_rates):
            rate *= u
            widest = max(widest, rate * (cfg.upsample_initial_channel // 2 ** (i + 1)))
        frames = forms.gpu.memory_budget() // (widest * 4 * GPU_FRAME_ACTIVATIONS)
        return max(int(frames), 2 * self.receptive_radius_frames())

    def stage_margins(self) -> list[int]:
        """Samples of context each upsampling stage must pass on, after its residual blocks.

        Entry ``i`` is how many stage-``i`` samples on each side of a kept stretch the layers
        after stage ``i``'s residual blocks reach (the later transposed convolutions, residual
        blocks and ``conv_post``), rounded up with a sample of slack per layer. Cropping a
        stage's output to the kept stretch plus this margin changes no kept output sample.
        """
        cfg = self.cfg
        res_reach = self._resblock_reach()
        need = 3 + 1  # conv_post (k=7), at the output rate
        margins = [need]
        for u, k in zip(cfg.upsample_rates[:0:-1], cfg.upsample_kernel_sizes[:0:-1]):
            need = -(-(need + res_reach + k) // u) + 1  # through that stage's blocks and upsampling
            margins.append(need)
        return margins[::-1]

    def __call__(self, x: mx.array, g: mx.array | None = None, sine_waves: mx.array | None = None,
                 trace: dict | None = None, chunk_frames: int | None = None,
                 keep: tuple[int, int] | None = None) -> mx.array:
        """x: (B, T, C) latent; g: (B, 1, gin); sine_waves: (B, T·upp, 1) for NSF. -> (B, T·upp).

        With ``chunk_frames``, the signal is decoded in pieces of that many frames, each with
        :meth:`receptive_radius_frames` (+2) frames of real context on both sides that are
        decoded and thrown away: every kept sample sees exactly the inputs it sees in one pass,
        while memory stays bounded by the chunk size. Each piece is evaluated before the next.
        Within a piece, each stage's output is cropped to what the later stages still reach
        (:meth:`stage_margins`), so the context costs full work only in the first stage.

        ``keep=(a, b)`` decodes only the audio of latent frames ``a..b`` (B, (b − a)·upp),
        equal to that part of the whole; the rest of ``x`` serves as context.
        """
        t = x.shape[1]
        a, b = (0, t) if keep is None else keep
        if not 0 <= a < b <= t:
            raise ValueError(f"keep {keep} outside the {t} decoded frames")
        with buffer_cache(DECODE_BUFFER_CACHE):
            return self._decode(x, g, sine_waves, trace, chunk_frames, a, b)

    def _decode(self, x: mx.array, g: mx.array | None, sine_waves: mx.array | None, trace: dict | None,
                chunk_frames: int | None, a: int, b: int) -> mx.array:
        t = x.shape[1]
        upp = self.cfg.upp
        if trace is not None:
            y = self._forward(x, g, sine_waves, trace)[:, a * upp:b * upp]
            mx.eval(y)  # inside the cache scope
            return y
        margin = self.receptive_radius_frames() + 2
        step = b - a if chunk_frames is None else chunk_frames
        bounds = [(start, min(start + step, b)) for start in range(a, b, step)]
        mx.eval([v for v in (x, g, sine_waves) if v is not None])  # workers cannot evaluate this thread's graph

        def piece(bound: tuple[int, int]) -> mx.array:
            start, stop = bound
            lo, hi = max(start - margin, 0), min(stop + margin, t)
            sine = sine_waves[:, lo * upp:hi * upp] if sine_waves is not None else None
            y = self._forward(x[:, lo:hi], g, sine, None, keep=(start - lo, stop - lo))
            mx.eval(y)
            return y

        if forms.is_cpu():
            pieces = forms.cpu.decode_pieces(self, piece, bounds)
        else:
            pieces = [piece(bound) for bound in bounds]
        return pieces[0] if len(pieces) == 1 else mx.concatenate(pieces, axis=1)

    def _forward(self, x: mx.array, g: mx.array | None, sine_waves: mx.array | None,
                 trace: dict | None, keep: tuple[int, int] | None = None) -> mx.array:
        """Decode ``x``; with ``keep=(a, b)`` only output frames a..b, each stage cropped to its reach."""
        n_k = len(self.cfg.resblock_kernel_sizes)
        margins = self.stage_margins() if keep is not None else None
        har = None
        if self.cfg.nsf:
            if sine_waves is None:
                raise ValueError("the NSF decoder needs the sine excitation")
            har = self.m_source(sine_waves)
            if trace is not None:
                trace["har_source"] = har
        x = self.conv_pre(x)
        if trace is not None:
            trace["dec_conv_pre_out"] = x
        if g is not None:
            x = x + self.cond(g)
        rate, first = 1, 0  # samples per latent frame here; the piece's sample (at this rate) in x[:, 0]
        for i, up in enumerate(self.ups):
            x = up(leaky_relu(x, LRELU_SLOPE))
            rate *= self.cfg.upsample_rates[i]
            first *= self.cfg.upsample_rates[i]
            if trace is not None:
                trace[f"dec_ups{i}_out"] = x
            if har is not None:
                src = self.noise_convs[i](har)
                if trace is not None:
                    trace[f"dec_noise_convs{i}_out"] = src
                x = x + src[:, first:first + x.shape[1]]  # the source of the whole piece, at x's samples
            xs = self.resblocks[i * n_k](x)
            for j in range(1, n_k):
                xs = xs + self.resblocks[i * n_k + j](x)
            x = xs / n_k
            if margins is not None:  # drop what no later layer reaches from the kept frames
                lo = max(keep[0] * rate - margins[i], first)
                hi = min(keep[1] * rate + margins[i], first + x.shape[1])
                if (lo, hi) != (first, first + x.shape[1]):
                    x = x[:, lo - first:hi - first]
                    first = lo
        x = self.conv_post(leaky_relu(x, FINAL_LRELU_SLOPE))
        if trace is not None:
            trace["dec_conv_post_out"] = x
        if keep is not None:
            x = x[:, keep[0] * rate - first:keep[1] * rate - first]
        return mx.tanh(x)[..., 0]
