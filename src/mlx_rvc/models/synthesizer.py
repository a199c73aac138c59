"""The RVC voice synthesizer on MLX: TextEncoder → reverse residual-coupling flow → (NSF-)HiFi-GAN.

Covers the reference's four classes (v1 = 256-d phone features, v2 = 768-d; with f0 = NSF
decoder + pitch embedding, without = plain HiFi-GAN) at every sample rate. Parameter paths
equal the reference's state-dict keys (``enc_p.encoder.attn_layers.0.conv_q.weight``…), so
:func:`sanitize` only drops training-only weights, folds weight norm and changes layouts.

Every random draw the reference makes can be injected (:class:`SynthNoise`); otherwise it comes
from a seeded numpy generator, so equal seeds give equal audio.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from ..errors import ModelConfigError, UnknownModelError
from .attention import Encoder, PointwiseConv
from .layers import (
    LRELU_SLOPE,
    Conv1d,
    conv_weight_to_mlx,
    check_shapes,
    fold_all_weight_norms,
    leaky_relu,
    load_strict,
    polyphase_weight,
    sequence_mask,
)
from .. import forms
from .nsf import Generator, GeneratorConfig, sine_excitation

FRAME_RATE = 100  # latent frames per second (10 ms hop)
Z_P_NOISE_SCALE = 0.66666  # the reference's sampling temperature for z_p
DECODE_AUTO = "auto"  # decode in the pieces the active form chooses (Generator.piece_frames)
FLOW_KERNEL = 5  # residual-coupling WaveNet kernel, fixed by the reference's model classes
FLOW_LAYERS = 3  # WaveNet layers per coupling
FLOW_COUPLINGS = 4  # couplings, each followed by a channel flip
N_PITCH_BINS = 256  # coarse pitch embedding size
SAMPLE_RATES = {"32k": 32000, "40k": 40000, "48k": 48000}
PHONE_DIMS = {"v1": 256, "v2": 768}
# RVC's positional `config` list, in the order train/process_ckpt.py saves it
CONFIG_FIELDS = (
    "spec_channels", "segment_size", "inter_channels", "hidden_channels", "filter_channels",
    "n_heads", "n_layers", "kernel_size", "p_dropout", "resblock", "resblock_kernel_sizes",
    "resblock_dilation_sizes", "upsample_rates", "upsample_initial_channel", "upsample_kernel_sizes",
    "spk_embed_dim", "gin_channels", "sample_rate",
)


@dataclass(frozen=True)
class SynthesizerConfig:
    """Named hyper-parameters of an RVC voice (decoded once from the checkpoint)."""

    version: str  # "v1" (256-d phone features) or "v2" (768-d)
    f0: bool  # True: pitch-conditioned NSF voice
    sample_rate: int  # output Hz
    spec_channels: int  # linear-spectrogram bins of the (dropped) posterior encoder
    segment_size: int  # training slice length, kept for information
    inter_channels: int  # latent channels
    hidden_channels: int
    filter_channels: int  # text-encoder FFN width
    n_heads: int
    n_layers: int  # text-encoder layers
    kernel_size: int  # text-encoder FFN kernel
    p_dropout: float
    resblock: str  # "1" or "2"
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    upsample_rates: tuple[int, ...]
    upsample_initial_channel: int
    upsample_kernel_sizes: tuple[int, ...]
    spk_embed_dim: int  # number of speakers
    gin_channels: int  # speaker-embedding width
    phone_channels: int  # 256 (v1) or 768 (v2)
    vocoder: str = "HiFi-GAN"

    @property
    def upp(self) -> int:
        """Output samples per 10 ms frame (= sample_rate / 100)."""
        return int(np.prod(self.upsample_rates))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SynthesizerConfig":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("resblock_kernel_sizes", "upsample_rates", "upsample_kernel_sizes"):
            kw[k] = tuple(int(v) for v in kw[k])
        kw["resblock_dilation_sizes"] = tuple(tuple(int(v) for v in ds) for ds in kw["resblock_dilation_sizes"])
        kw["resblock"] = str(kw["resblock"])
        return cls(**kw)

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(
            initial_channel=self.inter_channels, resblock=self.resblock,
            resblock_kernel_sizes=self.resblock_kernel_sizes,
            resblock_dilation_sizes=self.resblock_dilation_sizes,
            upsample_rates=self.upsample_rates, upsample_initial_channel=self.upsample_initial_channel,
            upsample_kernel_sizes=self.upsample_kernel_sizes, gin_channels=self.gin_channels,
            sample_rate=self.sample_rate, nsf=self.f0,
        )


# Upsampling geometry of the reference's training configs: (version, rate) -> (rates, kernels, spec
# channels, training segment in frames). v2 40k voices are trained with the v1 40k config.
_STANDARD = {
    ("v1", 32000): ((10, 4, 2, 2, 2), (16, 16, 4, 4, 4), 513, 40),
    ("v1", 40000): ((10, 10, 2, 2), (16, 16, 4, 4), 1025, 32),
    ("v1", 48000): ((10, 6, 2, 2, 2), (16, 16, 4, 4, 4), 1025, 24),
    ("v2", 32000): ((10, 8, 2, 2), (20, 16, 4, 4), 513, 40),
    ("v2", 40000): ((10, 10, 2, 2), (16, 16, 4, 4), 1025, 32),
    ("v2", 48000): ((12, 10, 2, 2), (24, 20, 4, 4), 1025, 36),
}


def standard_config(version: str = "v2", sample_rate: int = 48000, f0: bool = True) -> SynthesizerConfig:
    """The full-size architecture every RVC WebUI voice of this version and rate has."""
    try:
        rates, kernels, spec, segment = _STANDARD[(version, sample_rate)]
    except KeyError:
        raise ValueError(f"no standard RVC voice for {version} at {sample_rate} Hz") from None
    return SynthesizerConfig(
        version=version, f0=f0, sample_rate=sample_rate, spec_channels=spec, segment_size=segment,
        inter_channels=192, hidden_channels=192, filter_channels=768, n_heads=2, n_layers=6,
        kernel_size=3, p_dropout=0.0, resblock="1", resblock_kernel_sizes=(3, 7, 11),
        resblock_dilation_sizes=((1, 3, 5),) * 3, upsample_rates=rates, upsample_initial_channel=512,
        upsample_kernel_sizes=kernels, spk_embed_dim=109, gin_channels=256, phone_channels=PHONE_DIMS[version],
    )


def random_weights(cfg: SynthesizerConfig, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Randomly initialised, untrained weights in the sanitised layout (demos and benchmarks).

    Uniform ±1/√fan_in like torch's default layer init; norms start at identity; the output
    convolution is scaled up so the untrained decoder's output is audible (RMS ≈ 0.2).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, shape in expected_shapes(cfg).items():
        if key.endswith(("gamma", "norm.weight")):
            value = np.ones(shape)
        elif key.endswith(("beta", "bias")):
            value = np.zeros(shape)  # no offsets: an untrained decoder otherwise drifts to a DC bias
        elif key.startswith(("emb_g", "enc_p.emb_pitch")) or key.endswith(("emb_rel_k", "emb_rel_v")):
            value = rng.standard_normal(shape) * (0.3 if "emb_rel" in key else 1.0)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
            if key.startswith("dec.ups."):
                fan_in = shape[-1] * shape[1]  # polyphase layout: (stride·out, taps, in)
            value = rng.uniform(-1, 1, shape) / np.sqrt(fan_in)
        out[key] = value.astype(np.float32)
    out["dec.conv_post.weight"] *= np.float32(8.0)
    if cfg.f0:
        out["dec.m_source.l_linear.weight"] = np.full((1, 1), 4.0, np.float32)  # audible harmonic source
    return out


def config_from_checkpoint(cpt: dict[str, Any], *, name: str = "voice") -> SynthesizerConfig:
    """Decode an RVC voice checkpoint's positional ``config`` (+ ``sr``, ``f0``, ``version``).

    The speaker count is taken from ``emb_g.weight`` as the reference does; everything else is
    checked against the tensor shapes by :func:`sanitize`'s strict comparison.
    """
    raw = cpt.get("config")
    weights = cpt.get("weight")
    if not isinstance(raw, (list, tuple)) or not isinstance(weights, dict):
        raise UnknownModelError(f"{name}: not an RVC voice (needs a 'config' list and a 'weight' dict)")
    if len(raw) != len(CONFIG_FIELDS):
        raise ModelConfigError(f"{name}: config has {len(raw)} entries, RVC voices have {len(CONFIG_FIELDS)}")
    values = dict(zip(CONFIG_FIELDS, raw))
    vocoder = str(cpt.get("vocoder", "HiFi-GAN"))
    if vocoder != "HiFi-GAN":
        raise UnknownModelError(f"{name}: vocoder {vocoder!r} is not supported (only HiFi-GAN voices)")
    version = str(cpt.get("version", "v1"))
    if version not in PHONE_DIMS:
        raise UnknownModelError(f"{name}: unknown RVC version {version!r}")
    f0 = bool(int(cpt.get("f0", 1)))
    sr_field = cpt.get("sr", values["sample_rate"])
    sample_rate = SAMPLE_RATES.get(sr_field, sr_field) if isinstance(sr_field, str) else sr_field
    try:
        sample_rate = int(sample_rate)
        cfg_rate = values["sample_rate"]
        cfg_rate = int(SAMPLE_RATES.get(cfg_rate, cfg_rate)) if isinstance(cfg_rate, str) else int(cfg_rate)
    except (TypeError, ValueError) as exc:
        raise ModelConfigError(f"{name}: unreadable sample rate {sr_field!r}") from exc
    if cfg_rate != sample_rate:
        raise ModelConfigError(f"{name}: sr {sample_rate} disagrees with config sample rate {cfg_rate}")
    emb_g = weights.get("emb_g.weight")
    emb_phone = weights.get("enc_p.emb_phone.weight")
    if emb_g is None or emb_phone is None:
        raise ModelConfigError(f"{name}: missing emb_g.weight or enc_p.emb_phone.weight")
    phone_channels = int(emb_phone.shape[1])
    if phone_channels != PHONE_DIMS[version]:
        raise ModelConfigError(
            f"{name}: version {version} expects {PHONE_DIMS[version]}-d features but emb_phone takes {phone_channels}"
        )
    if f0 != ("enc_p.emb_pitch.weight" in weights):
        raise ModelConfigError(f"{name}: f0={int(f0)} but the pitch embedding is {'absent' if f0 else 'present'}")
    values.pop("sample_rate")
    values["spk_embed_dim"] = int(emb_g.shape[0])
    try:
        cfg = SynthesizerConfig.from_dict({
            **values, "version": version, "f0": f0, "sample_rate": sample_rate,
            "phone_channels": phone_channels, "vocoder": vocoder,
            "p_dropout": float(values["p_dropout"]),
        })
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelConfigError(f"{name}: malformed config ({exc})") from exc
    if cfg.upp * FRAME_RATE != cfg.sample_rate:  # one latent frame per 10 ms of output
        raise ModelConfigError(
            f"{name}: upsample rates {list(cfg.upsample_rates)} give {cfg.upp} samples per frame, "
            f"but {cfg.sample_rate} Hz needs {cfg.sample_rate // FRAME_RATE}"
        )
    return cfg


class TextEncoder(nn.Module):
    """Phone features (+ coarse pitch) → prior mean and log-scale of the latent."""

    def __init__(self, cfg: SynthesizerConfig):
        super().__init__()
        self.hidden_channels = cfg.hidden_channels
        self.out_channels = cfg.inter_channels
        self.emb_phone = nn.Linear(cfg.phone_channels, cfg.hidden_channels)
        if cfg.f0:
            self.emb_pitch = nn.Embedding(N_PITCH_BINS, cfg.hidden_channels)
        self.encoder = Encoder(cfg.hidden_channels, cfg.filter_channels, cfg.n_heads, cfg.n_layers, cfg.kernel_size)
        self.proj = PointwiseConv(cfg.hidden_channels, 2 * cfg.inter_channels)

    def __call__(self, phone: mx.array, pitch: mx.array | None, x_mask: mx.array,
                 trace: dict | None = None) -> tuple[mx.array, mx.array]:
        x = self.emb_phone(phone)
        if pitch is not None:
            x = x + self.emb_pitch(pitch)
        x = leaky_relu(x * math.sqrt(self.hidden_channels), LRELU_SLOPE)
        x = self.encoder(x * x_mask, x_mask)
        if trace is not None:
            trace["enc_p_encoder_out"] = x
        stats = self.proj(x) * x_mask
        return stats[..., : self.out_channels], stats[..., self.out_channels:]


class WN(nn.Module):
    """Non-causal WaveNet of the coupling layers (gated tanh·sigmoid units, speaker-conditioned)."""

    def __init__(self, hidden: int, kernel_size: int, n_layers: int, gin_channels: int):
        super().__init__()
        self.hidden = hidden
        self.n_layers = n_layers
        self.in_layers = [Conv1d(hidden, 2 * hidden, kernel_size, padding=kernel_size // 2) for _ in range(n_layers)]
        self.res_skip_layers = [
            PointwiseConv(hidden, 2 * hidden if i < n_layers - 1 else hidden) for i in range(n_layers)
        ]
        if gin_channels:
            self.cond_layer = PointwiseConv(gin_channels, 2 * hidden * n_layers)

    def __call__(self, x: mx.array, x_mask: mx.array, g: mx.array | None) -> mx.array:
        h = self.hidden
        output = None
        g_all = self.cond_layer(g) if g is not None else None
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            a = in_layer(x)
            if g_all is not None:
                a = a + g_all[..., 2 * h * i: 2 * h * (i + 1)]
            acts = forms.ops().gated_tanh(a, h)
            rs = res_skip(acts)
            if i < self.n_layers - 1:
                x = (x + rs[..., :h]) * x_mask
                skip = rs[..., h:]
            else:
                skip = rs
            output = skip if output is None else output + skip
        return output * x_mask


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling: the second half of the channels is shifted by WN(first half)."""

    def __init__(self, channels: int, hidden: int, gin_channels: int):
        super().__init__()
        self.half = channels // 2
        self.pre = PointwiseConv(self.half, hidden)
        self.enc = WN(hidden, FLOW_KERNEL, FLOW_LAYERS, gin_channels)
        self.post = PointwiseConv(hidden, self.half)

    def reverse(self, x: mx.array, x_mask: mx.array, g: mx.array | None) -> mx.array:
        x0, x1 = x[..., : self.half], x[..., self.half:]
        h = self.enc(self.pre(x0) * x_mask, x_mask, g)
        m = self.post(h) * x_mask
        return mx.concatenate([x0, (x1 - m) * x_mask], axis=-1)


class Flip(nn.Module):
    """Reverses the channel order (its own inverse)."""

    def reverse(self, x: mx.array, x_mask: mx.array, g: mx.array | None) -> mx.array:
        return x[..., ::-1]


class ResidualCouplingBlock(nn.Module):
    def __init__(self, channels: int, hidden: int, gin_channels: int):
        super().__init__()
        self.flows = []
        for _ in range(FLOW_COUPLINGS):
            self.flows.append(ResidualCouplingLayer(channels, hidden, gin_channels))
            self.flows.append(Flip())

    def reverse(self, x: mx.array, x_mask: mx.array, g: mx.array | None, trace: dict | None = None) -> mx.array:
        for j, flow in enumerate(reversed(self.flows)):
            x = flow.reverse(x, x_mask, g)
            if trace is not None:
                k = (len(self.flows) - 1 - j) // 2
                trace[f"flow_rev{j}_{'flip' if isinstance(flow, Flip) else 'coupling'}{k}"] = x
        return x


@dataclass
class SynthNoise:
    """The synthesizer's random draws, in the reference's order and layouts (channels-last here).

    z_p: (B, T, inter_channels) standard normal; sine: (B, T·upp, 1) standard normal (f0 voices).
    A missing draw is taken from ``numpy.random.default_rng(seed)``, z_p first.
    """

    z_p: np.ndarray | None = None
    sine: np.ndarray | None = None
    # (B, T·upp, 1): the NSF excitation itself, made by the caller (a stream continuing the
    # sine's phase across calls); replaces the one ``infer`` would make from pitchf and ``sine``
    excitation: np.ndarray | None = None


class Synthesizer(nn.Module):
    """An RVC voice: ``infer`` maps phone features (+ pitch) and a speaker id to audio."""

    def __init__(self, cfg: SynthesizerConfig):
        super().__init__()
        self.cfg = cfg
        self.enc_p = TextEncoder(cfg)
        self.flow = ResidualCouplingBlock(cfg.inter_channels, cfg.hidden_channels, cfg.gin_channels)
        self.dec = Generator(cfg.generator_config())
        self.emb_g = nn.Embedding(cfg.spk_embed_dim, cfg.gin_channels)

    def infer(self, phone: mx.array, lengths: mx.array, sid: mx.array, *, pitch: mx.array | None = None,
              pitchf: np.ndarray | None = None, noise: SynthNoise | None = None, seed: int = 0,
              trace: dict | None = None, decode_chunk_frames: int | str | None = DECODE_AUTO,
              keep_frames: tuple[int, int] | None = None, flow_context: int | None = None) -> mx.array:
        """Synthesise audio.

        Args:
            phone: (B, T, phone_channels) features at 100 frames/s.
            lengths: (B,) valid frames per item.
            sid: (B,) speaker ids.
            pitch: (B, T) int coarse pitch 1..255 (f0 voices).
            pitchf: (B, T) float f0 in Hz, 0 = unvoiced (f0 voices).
            noise: injected random draws; missing ones are drawn from ``seed``.
            trace: if given, filled with intermediates under the reference fixtures' names.
            decode_chunk_frames: decode this many frames at a time (exact: each piece gets its
                receptive field of context); ``None`` decodes in one pass; ``"auto"`` lets the
                active form choose (:meth:`Generator.piece_frames`).
            keep_frames: ``(a, b)``: decode only the audio of frames a..b (the rest is context
                the caller would cut off; the text encoder and flow still see every frame).
            flow_context: with ``keep_frames``, run the flow (and decode) only from this many
                frames before ``a`` on; the flow's couplings reach FLOW_COUPLINGS × FLOW_LAYERS ×
                (FLOW_KERNEL // 2) = 24 frames, so 24 is exact for the kept frames (the reference's real-time path does this).

        Returns:
            (B, T·upp) audio in [-1, 1] at ``cfg.sample_rate``; (B, (b − a)·upp) with ``keep_frames``.
        """
        cfg = self.cfg
        b, t, c = phone.shape
        if c != cfg.phone_channels:
            raise ValueError(f"voice expects {cfg.phone_channels}-d features, got {c}")
        if cfg.f0 and (pitch is None or pitchf is None):
            raise ValueError("this voice is pitch-conditioned: pitch and pitchf are required")
        sid = mx.array(sid)
        if int(mx.max(sid).item()) >= cfg.spk_embed_dim or int(mx.min(sid).item()) < 0:
            raise ValueError(f"speaker id out of range 0..{cfg.spk_embed_dim - 1}")
        noise = noise or SynthNoise()
        rng = np.random.default_rng(seed)
        eps = noise.z_p if noise.z_p is not None else rng.standard_normal((b, t, cfg.inter_channels))
        g = self.emb_g(sid)[:, None, :]  # (B, 1, gin)
        x_mask = sequence_mask(mx.array(lengths), t)
        m_p, logs_p = self.enc_p(phone, pitch if cfg.f0 else None, x_mask, trace)
        z_p = (m_p + mx.exp(logs_p) * mx.array(eps, dtype=mx.float32) * Z_P_NOISE_SCALE) * x_mask
        head = 0  # frames before the flow's input
        if keep_frames is not None and flow_context is not None:
            head = max(0, keep_frames[0] - flow_context)
            keep_frames = (keep_frames[0] - head, keep_frames[1] - head)
            z_p, x_mask = z_p[:, head:], x_mask[:, head:]
        z = self.flow.reverse(z_p, x_mask, g, trace)
        sine = None
        if cfg.f0 and noise.excitation is not None:
            sine = mx.array(np.asarray(noise.excitation, np.float32)[:, head * cfg.upp:])
        elif cfg.f0:
            draw = noise.sine if noise.sine is not None else rng.standard_normal((b, t * cfg.upp, 1))
            sine = mx.array(sine_excitation(np.asarray(pitchf), upp=cfg.upp, sample_rate=cfg.sample_rate,
                                            noise=draw)[:, head * cfg.upp:])
        if trace is not None:
            trace.update(g=g, m_p=m_p, logs_p=logs_p, x_mask=x_mask, z_p=z_p, z=z, dec_input=z * x_mask)
            if sine is not None:
                trace["sine_waves"] = sine
        if decode_chunk_frames == DECODE_AUTO:
            decode_chunk_frames = self.dec.piece_frames()
        return self.dec(z * x_mask, g, sine, trace, chunk_frames=decode_chunk_frames, keep=keep_frames)


def expected_shapes(cfg: SynthesizerConfig) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of the MLX model for ``cfg`` (nothing is computed)."""
    model = Synthesizer(cfg)
    return {k: tuple(v.shape) for k, v in tree_flatten(model.parameters())}


def sanitize(weights: dict[str, np.ndarray], cfg: SynthesizerConfig) -> dict[str, np.ndarray]:
    """Reference state dict -> MLX parameters: drop ``enc_q.*``, fold weight norm, change layouts.

    Conv1d (out, in, K) -> (out, K, in); ConvTranspose1d ``dec.ups.N`` -> polyphase layout;
    everything float32. Raises ModelConfigError naming missing, unexpected or mis-shaped keys.
    """
    kept = {k: np.asarray(v) for k, v in weights.items()
            if not k.startswith("enc_q.") and not k.endswith("num_batches_tracked")}
    try:
        kept = fold_all_weight_norms(kept)
    except KeyError as exc:
        raise ModelConfigError(f"incomplete weight norm: {exc}") from exc
    out: dict[str, np.ndarray] = {}
    for key, value in kept.items():
        value = value.astype(np.float32)
        if key.startswith("dec.ups.") and key.endswith(".weight"):
            i = int(key.split(".")[2])
            if i >= len(cfg.upsample_rates) or value.shape[-1] != cfg.upsample_kernel_sizes[i]:
                raise ModelConfigError(f"{key} has shape {value.shape}, config says kernel "
                                       f"{cfg.upsample_kernel_sizes[i] if i < len(cfg.upsample_rates) else '-'}")
            value = polyphase_weight(value, cfg.upsample_rates[i])
        elif value.ndim == 3 and not key.endswith(("emb_rel_k", "emb_rel_v")):
            value = conv_weight_to_mlx(value)
        out[key] = value
    check_weights(out, cfg)
    return out


def check_weights(weights: dict[str, Any], cfg: SynthesizerConfig) -> None:
    """Strict comparison of names and shapes with the model ``cfg`` describes."""
    check_shapes(Synthesizer(cfg), weights, "voice")


def convert_checkpoint(cpt: dict[str, Any], *, name: str = "voice") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """RVC voice checkpoint -> (named config fields, sanitised weights). Used by ``mlx-rvc import``."""
    cfg = config_from_checkpoint(cpt, name=name)
    weights = sanitize(cpt["weight"], cfg)
    info = cpt.get("info")
    extra = {"info": str(info)} if info is not None else {}
    return {**cfg.to_dict(), **extra}, weights


def build(cfg: SynthesizerConfig, weights: dict) -> Synthesizer:
    """A ready model from sanitised weights (numpy or MLX arrays; strict)."""
    return load_strict(Synthesizer(cfg), weights, "voice")


def load(model_dir: str | Path) -> Synthesizer:
    """Load an imported voice (a model directory written by ``mlx-rvc import``)."""
    from .. import artifact

    config, weights = artifact.read_model(model_dir, model_type="rvc_voice", what="an RVC voice")
    return build(SynthesizerConfig.from_dict(config), weights)
