"""RMVPE pitch estimator on MLX: log-mel → deep U-Net → BiGRU → 360-bin pitch salience.

The network's widths and depths are read from the weights (the released model is
``E2E(n_blocks=4, n_gru=1, kernel_size=(2, 2))``; other widths load the same way). BatchNorm
running statistics are folded into the preceding convolutions at import. Images are
channels-last: (B, time, mel bins, channels). In the CPU form the U-Net and the GRU run in numpy
instead, tiled over two threads (:mod:`mlx_rvc.forms.cpu_rmvpe`).

Decoding (salience → Hz) and the mel front end are the pure functions of ``mlx_rvc.dsp``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from ..dsp.f0 import salience_to_f0
from ..dsp.mel import N_MELS, log_mel
from .. import forms
from ..forms import cpu_rmvpe
from ..errors import ModelConfigError, UnknownModelError
from .layers import ChannelAffine, check_shapes, load_strict

logger = logging.getLogger(__name__)

BN_EPS = 1e-5  # torch BatchNorm2d default
FRAME_MULTIPLE = 32  # the U-Net pools time by 2 five times: frames are zero-padded to a multiple of 32
VOICING_THRESHOLD = 0.03  # the pipeline's salience threshold
# The released U-Net's reach: 8 convolutions per level at 5 resolutions (×1…×16 frames) on both
# sides, and 32 at the bottom (×32): 8·31 + 32·32 + 9·31 ≈ 1550 frames. 1600 frames (16 s) of
# context, a multiple of 32, make blocked evaluation exact.
UNET_CONTEXT_FRAMES = 1600
UNET_BLOCK_FRAMES = 3200  # 32 s per U-Net block: long inputs peak like a 64 s one
GRU_BLOCK_STEPS = 4096  # time steps whose input projections are computed together
GRU_UNROLL = 16  # MLX path: GRU steps per compiled call


@dataclass(frozen=True)
class RmvpeConfig:
    en_de_layers: int  # encoder (and decoder) levels
    inter_layers: int  # intermediate blocks at the bottom
    n_blocks: int  # residual conv blocks per level
    in_channels: int
    en_out_channels: int  # channels of the first level (doubling per level)
    n_gru: int  # BiGRU layers (0: plain linear head)
    gru_hidden: int
    n_classes: int  # salience bins (360 = 20-cent steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RmvpeConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in d.items() if k in known})


def config_from_weights(w: dict[str, np.ndarray], *, name: str = "rmvpe") -> RmvpeConfig:
    def count(pattern: str) -> int:
        ids = {int(m.group(1)) for k in w for m in [re.match(pattern, k)] if m}
        return max(ids) + 1 if ids else 0

    try:
        n_gru = count(r"fc\.0\.gru\.weight_ih_l(\d+)$")
        return RmvpeConfig(
            en_de_layers=count(r"unet\.encoder\.layers\.(\d+)\."),
            inter_layers=count(r"unet\.intermediate\.layers\.(\d+)\."),
            n_blocks=count(r"unet\.encoder\.layers\.0\.conv\.(\d+)\."),
            in_channels=int(w["unet.encoder.bn.weight"].shape[0]),
            en_out_channels=int(w["unet.encoder.layers.0.conv.0.conv.0.weight"].shape[0]),
            n_gru=n_gru,
            gru_hidden=int(w["fc.0.gru.weight_hh_l0"].shape[1]) if n_gru else 0,
            n_classes=int(w["fc.1.weight"].shape[0] if n_gru else w["fc.0.weight"].shape[0]),
        )
    except KeyError as exc:
        raise ModelConfigError(f"{name}: RMVPE weights lack {exc}") from exc


def _fold_bn(prefix: str, w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm (eval) as a per-channel scale and shift."""
    gamma, beta = w[prefix + ".weight"].astype(np.float64), w[prefix + ".bias"].astype(np.float64)
    mean, var = w[prefix + ".running_mean"].astype(np.float64), w[prefix + ".running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + BN_EPS)
    return scale, beta - mean * scale


def sanitize(weights: dict[str, np.ndarray], cfg: RmvpeConfig) -> dict[str, np.ndarray]:
    """State dict -> MLX parameters: BatchNorms folded into their convs, NHWC layouts, float32."""
    w = {k: np.asarray(v) for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def bn_keys(p):
        return {p + s for s in (".weight", ".bias", ".running_mean", ".running_var")}

    scale, shift = _fold_bn("unet.encoder.bn", w)
    out["unet.encoder.bn.scale"], out["unet.encoder.bn.shift"] = scale, shift
    used |= bn_keys("unet.encoder.bn")
    for key in sorted(w):
        m = re.match(r"(.*\.conv\.)(0|3)\.weight$", key)
        if m:  # ConvBlockRes conv followed by its BatchNorm (index +1)
            bn = f"{m.group(1)}{int(m.group(2)) + 1}"
            s, b = _fold_bn(bn, w)
            conv = w[key].astype(np.float64) * s[:, None, None, None]  # (out, in, kh, kw)
            out[key] = conv.transpose(0, 2, 3, 1)
            out[key[: -len("weight")] + "bias"] = b
            used |= {key} | bn_keys(bn)
            continue
        m = re.match(r"(unet\.decoder\.layers\.\d+\.conv1)\.0\.weight$", key)
        if m:  # ConvTranspose2d (in, out, kh, kw) followed by BatchNorm conv1.1
            s, b = _fold_bn(m.group(1) + ".1", w)
            conv = w[key].astype(np.float64) * s[None, :, None, None]
            out[key] = conv.transpose(1, 2, 3, 0)  # MLX conv_transpose2d: (out, kh, kw, in)
            out[m.group(1) + ".0.bias"] = b
            used |= {key} | bn_keys(m.group(1) + ".1")
    for key, value in w.items():
        if key in used:
            continue
        if value.ndim == 4:  # shortcut 1x1 and the output cnn
            out[key] = value.astype(np.float64).transpose(0, 2, 3, 1)
        else:
            out[key] = value
    out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
    check_weights(out, cfg)
    return out


def check_weights(weights: dict[str, Any], cfg: RmvpeConfig) -> None:
    check_shapes(E2E(cfg), weights, "RMVPE")


def convert_checkpoint(obj: Any, *, name: str = "rmvpe") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if not isinstance(obj, dict):
        raise UnknownModelError(f"{name}: not an RMVPE state dict")
    cfg = config_from_weights(obj, name=name)
    return cfg.to_dict(), sanitize(obj, cfg)


# ----------------------------------------------------------------------------- modules


def numpy_kernels() -> bool:
    """The CPU form runs the U-Net and the GRU in numpy (:mod:`mlx_rvc.forms.cpu_rmvpe`)."""
    return forms.is_cpu()


class Conv(nn.Module):
    """Conv2d (3x3 'same' or 1x1) with bias, NHWC; weight (out, kh, kw, in)."""

    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__()
        self.weight = mx.zeros((c_out, k, k, c_in))
        self.bias = mx.zeros((c_out,))

    def __call__(self, x: mx.array) -> mx.array:
        return forms.ops().conv2d(x, self.weight, self.bias)


class _NoParams(nn.Module):
    """Keeps list positions of the reference's parameter-free layers (BatchNorm folded, ReLU)."""


class ConvBlockRes(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        # positions 0 and 3 hold the convolutions (their BatchNorms, 1 and 4, are folded in)
        self.conv = [Conv(c_in, c_out, 3), _NoParams(), _NoParams(), Conv(c_out, c_out, 3)]
        if c_in != c_out:
            self.shortcut = Conv(c_in, c_out, 1)

    def __call__(self, x: mx.array) -> mx.array:
        y = nn.relu(self.conv[3](nn.relu(self.conv[0](x))))
        return y + (self.shortcut(x) if "shortcut" in self else x)


class ResBlocks(nn.Module):
    def __init__(self, c_in: int, c_out: int, n_blocks: int):
        super().__init__()
        self.conv = [ConvBlockRes(c_in if i == 0 else c_out, c_out) for i in range(n_blocks)]

    def __call__(self, x: mx.array) -> mx.array:
        for block in self.conv:
            x = block(x)
            mx.eval(x)  # block by block: a lazily built level holds ~20 full-size temporaries at once
        return x


def avg_pool_2x2(x: mx.array) -> mx.array:
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class Encoder(nn.Module):
    def __init__(self, cfg: RmvpeConfig):
        super().__init__()
        self.bn = ChannelAffine(cfg.in_channels)
        c_in, c_out = cfg.in_channels, cfg.en_out_channels
        self.layers = []
        for _ in range(cfg.en_de_layers):
            self.layers.append(ResBlocks(c_in, c_out, cfg.n_blocks))
            c_in, c_out = c_out, c_out * 2

    def __call__(self, x: mx.array) -> tuple[mx.array, list[mx.array]]:
        x = self.bn(x)
        skips = []
        for layer in self.layers:
            y = layer(x)
            x = avg_pool_2x2(y)
            mx.eval(x, y)  # level by level: keeps only the skips and one level's temporaries alive
            skips.append(y)
        return x, skips


class UpConv(nn.Module):
    """ConvTranspose2d 3x3, stride 2, padding 1, output padding 1 (doubles both sizes), BN folded, ReLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.weight = mx.zeros((c_out, 3, 3, c_in))
        self.bias = mx.zeros((c_out,))

    def __call__(self, x: mx.array) -> mx.array:
        return nn.relu(forms.ops().conv_transpose2d_x2(x, self.weight, self.bias))


class DecoderBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, n_blocks: int):
        super().__init__()
        self.conv1 = [UpConv(c_in, c_out)]
        self.conv2 = [ConvBlockRes(2 * c_out if i == 0 else c_out, c_out) for i in range(n_blocks)]

    def __call__(self, x: mx.array, skip: mx.array) -> mx.array:
        x = mx.concatenate([self.conv1[0](x), skip], axis=-1)
        for block in self.conv2:
            x = block(x)
            mx.eval(x)
        return x


class DeepUnet(nn.Module):
    def __init__(self, cfg: RmvpeConfig):
        super().__init__()
        self.encoder = Encoder(cfg)
        bottom = cfg.en_out_channels * 2 ** (cfg.en_de_layers - 1)  # channels of the last encoder level
        self.intermediate = Intermediate(bottom, 2 * bottom, cfg)
        self.decoder = _Decoder(2 * bottom, cfg)

    def __call__(self, x: mx.array) -> mx.array:
        x, skips = self.encoder(x)
        return self.decoder(self.intermediate(x), skips)


class Intermediate(nn.Module):
    def __init__(self, c_in: int, c_out: int, cfg: RmvpeConfig):
        super().__init__()
        self.layers = [ResBlocks(c_in if i == 0 else c_out, c_out, cfg.n_blocks) for i in range(cfg.inter_layers)]

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.layers:
            x = layer(x)
        return x


class _Decoder(nn.Module):
    def __init__(self, c_in: int, cfg: RmvpeConfig):
        super().__init__()
        self.layers = []
        for _ in range(cfg.en_de_layers):
            self.layers.append(DecoderBlock(c_in, c_in // 2, cfg.n_blocks))
            c_in //= 2

    def __call__(self, x: mx.array, skips: list[mx.array]) -> mx.array:
        for i, layer in enumerate(self.layers):
            x = layer(x, skips[-1 - i])
            mx.eval(x)
        return x


class BiGRU(nn.Module):
    """torch.nn.GRU(bidirectional, batch_first) parameters; both directions run as one batch of 2."""

    def __init__(self, n_in: int, hidden: int, n_layers: int):
        super().__init__()
        self.gru = _GruParams(n_in, hidden, n_layers)

    def __call__(self, x: mx.array) -> mx.array:
        return self.gru(x)


@mx.compile
def _gru_step(state: mx.array, gx: mx.array, w_hh_t: mx.array, b_hh: mx.array) -> mx.array:
    """One GRU step of both directions (torch's gate order r, z, n): the state product, then the
    gates and the new state as one fused kernel. state (2, B, 1, h); gx (2, B, 1, 3h) = x·W_ih + b_ih."""
    h = state.shape[-1]
    gh = state @ w_hh_t + b_hh  # (2, B, 1, 3h)
    r = mx.sigmoid(gx[..., :h] + gh[..., :h])
    z = mx.sigmoid(gx[..., h: 2 * h] + gh[..., h: 2 * h])
    n = mx.tanh(gx[..., 2 * h:] + r * gh[..., 2 * h:])
    return (1 - z) * n + z * state


@mx.compile
def _gru_steps(state: mx.array, gx: mx.array, w_hh_t: mx.array, b_hh: mx.array) -> mx.array:
    """:data:`GRU_UNROLL` steps in one compiled call: (2, B, 1, h), (2, B, K, 3h) -> states (2, B, K, h).

    Dispatching each step from Python costs ~40 µs (measured on an H200: 3000 steps, 0.126 s);
    K steps per call divide that by K, the kernels stay the same."""
    states = []
    for k in range(gx.shape[2]):
        state = _gru_step(state, gx[:, :, k: k + 1], w_hh_t, b_hh)
        states.append(state)
    return mx.concatenate(states, axis=2)


class _GruParams(nn.Module):
    def __init__(self, n_in: int, hidden: int, n_layers: int):
        super().__init__()
        self.hidden = hidden
        self.n_layers = n_layers
        for layer in range(n_layers):
            width = n_in if layer == 0 else 2 * hidden
            for suffix in ("", "_reverse"):
                setattr(self, f"weight_ih_l{layer}{suffix}", mx.zeros((3 * hidden, width)))
                setattr(self, f"weight_hh_l{layer}{suffix}", mx.zeros((3 * hidden, hidden)))
                setattr(self, f"bias_ih_l{layer}{suffix}", mx.zeros((3 * hidden,)))
                setattr(self, f"bias_hh_l{layer}{suffix}", mx.zeros((3 * hidden,)))

    def __call__(self, x: mx.array) -> mx.array:
        """x: (B, T, n_in) -> (B, T, 2·hidden): forward states then backward states."""
        if numpy_kernels():
            return mx.array(cpu_rmvpe.gru(self, np.asarray(x.astype(mx.float32))))
        h = self.hidden
        for layer in range(self.n_layers):
            w_ih = mx.stack([getattr(self, f"weight_ih_l{layer}"), getattr(self, f"weight_ih_l{layer}_reverse")])
            w_hh = mx.stack([getattr(self, f"weight_hh_l{layer}"), getattr(self, f"weight_hh_l{layer}_reverse")])
            b_ih = mx.stack([getattr(self, f"bias_ih_l{layer}"), getattr(self, f"bias_ih_l{layer}_reverse")])
            b_hh = mx.stack([getattr(self, f"bias_hh_l{layer}"), getattr(self, f"bias_hh_l{layer}_reverse")])
            b, t, _ = x.shape
            seqs = mx.stack([x, x[:, ::-1]])  # (2, B, T, n_in): direction 1 reads time reversed
            w_ih_t = w_ih.transpose(0, 2, 1)[:, None]  # (2, 1, n_in, 3h)
            w_hh_t = w_hh.transpose(0, 2, 1)[:, None]  # (2, 1, h, 3h)
            state = mx.zeros((2, b, 1, h))
            b_hh_b = b_hh[:, None, None]  # (2, 1, 1, 3h)
            outs = []
            for s0 in range(0, t, GRU_BLOCK_STEPS):  # input projections a block of steps at a time
                gi = seqs[:, :, s0: s0 + GRU_BLOCK_STEPS] @ w_ih_t + b_ih[:, None, None]  # (2, B, n, 3h)
                mx.eval(gi)
                block = []
                n = gi.shape[2]
                for step in range(0, n - n % GRU_UNROLL, GRU_UNROLL):
                    states = _gru_steps(state, gi[:, :, step: step + GRU_UNROLL], w_hh_t, b_hh_b)
                    state = states[:, :, -1:]
                    block.append(states)
                    if step % 256 >= 256 - GRU_UNROLL:
                        mx.eval(state)  # keep the lazy graph short
                for step in range(n - n % GRU_UNROLL, n):
                    state = _gru_step(state, gi[:, :, step: step + 1], w_hh_t, b_hh_b)
                    block.append(state)
                outs.append(mx.concatenate(block, axis=2))
                mx.eval(outs[-1])
            seq = mx.concatenate(outs, axis=2)  # (2, B, T, h)
            x = mx.concatenate([seq[0], seq[1][:, ::-1]], axis=-1)
        return x



class E2E(nn.Module):
    def __init__(self, cfg: RmvpeConfig):
        super().__init__()
        self.cfg = cfg
        self._numpy_unet = None  # the CPU form's prepared weights (forms.cpu_rmvpe), made on first use
        self.unet = DeepUnet(cfg)
        self.cnn = Conv(cfg.en_out_channels, 3, 3)
        if cfg.n_gru:
            self.fc = [BiGRU(3 * N_MELS, cfg.gru_hidden, cfg.n_gru), nn.Linear(2 * cfg.gru_hidden, cfg.n_classes)]
        else:
            self.fc = [nn.Linear(3 * N_MELS, cfg.n_classes)]

    def image_features(self, mel: mx.array) -> mx.array:
        """U-Net + output conv: (B, T, 128) log-mel, T a multiple of 32 -> (B, T, 3·128)."""
        if numpy_kernels():
            return mx.array(cpu_rmvpe.image_features(self, np.asarray(mel.astype(mx.float32))))
        x = self.cnn(self.unet(mel[..., None]))  # (B, T, 128, 3)
        b, t = x.shape[:2]
        return x.transpose(0, 1, 3, 2).reshape(b, t, 3 * N_MELS)  # channel-major, as the reference flattens

    def head(self, x: mx.array) -> mx.array:
        for layer in self.fc:
            x = layer(x)
        return mx.sigmoid(x)

    def __call__(self, mel: mx.array) -> mx.array:
        """mel: (B, T, 128) log-mel, T a multiple of 32 -> salience (B, T, n_classes) in (0, 1)."""
        return self.head(self.image_features(mel))

    def salience(self, mel: np.ndarray, *, block_frames: int = UNET_BLOCK_FRAMES) -> np.ndarray:
        """(128, T) log-mel -> (T, n_classes) salience, as one zero-padded pass would give it.

        Long inputs run the U-Net in blocks of ``block_frames`` frames, each with
        :data:`UNET_CONTEXT_FRAMES` frames of real context on both sides, starting on the
        32-frame pooling grid, so every kept frame sees exactly what it sees in one pass and
        memory stays bounded. The bidirectional GRU then runs once over the whole sequence.
        """
        if numpy_kernels():
            return cpu_rmvpe.salience(self, mel, block_frames)
        return self._salience(mel, block_frames)

    def _salience(self, mel: np.ndarray, block_frames: int) -> np.ndarray:
        n = mel.shape[1]
        padded = -(-n // FRAME_MULTIPLE) * FRAME_MULTIPLE
        x = np.pad(mel.T, ((0, padded - n), (0, 0))).astype(np.float32)  # (T', 128)
        if padded <= block_frames + 2 * UNET_CONTEXT_FRAMES:
            feats = self.image_features(mx.array(x[None]))
        else:
            pieces = []
            for start in range(0, padded, block_frames):
                stop = min(start + block_frames, padded)
                lo, hi = max(start - UNET_CONTEXT_FRAMES, 0), min(stop + UNET_CONTEXT_FRAMES, padded)
                part = self.image_features(mx.array(x[None, lo:hi]))[:, start - lo: stop - lo]
                mx.eval(part)
                pieces.append(part)
            feats = mx.concatenate(pieces, axis=1)
        out = self.head(feats)
        mx.eval(out)
        return np.asarray(out[0, :n])

    def f0(self, audio_16k: np.ndarray, *, threshold: float = VOICING_THRESHOLD,
           block_frames: int = UNET_BLOCK_FRAMES) -> np.ndarray:
        """f0 in Hz per 10 ms frame (len // 160 + 1 frames), 0 where unvoiced.

        The CPU form streams inputs longer than one U-Net block through its U-Net and GRU
        (:func:`mlx_rvc.forms.cpu_rmvpe.f0_streamed`) in bounded memory.
        """
        mel = log_mel(audio_16k)
        if numpy_kernels():
            return cpu_rmvpe.f0(self, mel, threshold, block_frames)
        return salience_to_f0(self._salience(mel, block_frames), threshold=threshold)


RELEASED = RmvpeConfig(en_de_layers=5, inter_layers=4, n_blocks=4, in_channels=1, en_out_channels=16,
                       n_gru=1, gru_hidden=256, n_classes=360)  # the architecture of the released rmvpe.pt


def random_weights(cfg: RmvpeConfig = RELEASED, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Untrained weights in the sanitised layout (benchmarks): uniform ±1/√fan_in, zero biases."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, value in tree_flatten(E2E(cfg).parameters()):
        shape = tuple(value.shape)
        if key.endswith("scale"):
            w = np.ones(shape)
        elif key.endswith(("bias", "shift")):
            w = np.zeros(shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            w = rng.uniform(-1, 1, shape) / np.sqrt(fan_in)
        out[key] = w.astype(np.float32)
    return out


def build(cfg: RmvpeConfig, weights: dict) -> E2E:
    return load_strict(E2E(cfg), weights, "RMVPE")


def load(model_dir: str | Path) -> E2E:
    """Load an imported RMVPE model (a model directory written by ``mlx-rvc import``)."""
    from .. import artifact

    config, weights = artifact.read_model(model_dir, model_type="rmvpe", what="an RMVPE model")
    return build(RmvpeConfig.from_dict(config), weights)
