"""FCPE pitch estimator on MLX: log-mel → conv stack → conformer convolution blocks → 360 cent bins.

FCPE ("fast context-based pitch estimation", the ``torchfcpe`` package's ``CFNaiveMelPE``) is the
third f0 method of the 2026 RVC WebUI. The released model (``fcpe_c_v001.pt``) is the conv-only
variant: every encoder layer is a residual conformer convolution module (LayerNorm → pointwise
conv → GLU → depthwise conv → SiLU → pointwise conv) and no attention. Its config travels in the
checkpoint (``config_dict``); widths and depths are checked against the weights at import.

Front end: a librosa (Slaney) mel filterbank on the magnitude of a non-centred STFT whose input is
reflect-padded by (win − hop)/2 on each side, log-compressed at 1e-5, then one frame repeated at the
end so there are ``len // hop + 1`` frames, as ``torchfcpe``'s ``Wav2MelModule`` does.

Decoding (:func:`decode_local_argmax`): the sigmoid salience's peak and the 9 bins around it (indices
clamped to the table) give a salience-weighted mean in cents; frames whose peak salience is at most the
threshold (the reference uses 0.006) are unvoiced (0 Hz).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .. import forms
from ..dsp.mel import mel_filterbank, periodic_hann
from ..errors import ModelConfigError, UnknownModelError
from .layers import check_shapes, load_strict

THRESHOLD = 0.006  # the reference's voicing threshold on the peak salience (RVC WebUI, Applio)
LOG_FLOOR = 1e-5  # mel energies are clamped here before the log
MAG_EPS = 1e-9  # added to |X|² before the square root, as torchfcpe does
NORM_EPS = 1e-5  # torch LayerNorm / GroupNorm default
GROUPS = 4  # GroupNorm groups of the input stack
KERNEL = 31  # depthwise kernel of the conformer convolution module
EXPANSION = 2  # the conformer module's inner width is 2 × the model width
LOCAL_BINS = 4  # local_argmax averages the peak bin and 4 on each side
LEAKY_SLOPE = 0.01  # torch LeakyReLU default


@dataclass(frozen=True)
class FcpeConfig:
    sample_rate: int = 16000  # Hz, the mel front end's rate
    n_mels: int = 128
    n_fft: int = 1024
    win_size: int = 1024
    hop_size: int = 160  # samples per frame (10 ms)
    fmin: float = 0.0  # Hz, mel filterbank range
    fmax: float = 8000.0
    hidden_dims: int = 512
    n_layers: int = 6
    out_dims: int = 360  # cent bins
    f0_min: float = 32.7  # Hz, the cent table's first bin
    f0_max: float = 1975.5  # Hz, its last

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FcpeConfig":
        known = {f.name: f.type for f in fields(cls)}
        return cls(**{k: (float(v) if known[k] == "float" else int(v)) for k, v in d.items() if k in known})


def config_from_checkpoint(obj: dict, *, name: str = "fcpe") -> FcpeConfig:
    """Named fields from torchfcpe's ``config_dict`` (mel and model sections), checked against the weights."""
    cfg = obj.get("config_dict")
    w = obj.get("model")
    if not isinstance(cfg, dict) or not isinstance(w, dict):
        raise UnknownModelError(f"{name}: not an FCPE checkpoint (model + config_dict)")
    mel, model = cfg.get("mel") or {}, cfg.get("model") or {}
    if model.get("type") != "CFNaiveMelPE":
        raise UnknownModelError(f"{name}: FCPE model type {model.get('type')!r} is not CFNaiveMelPE")
    if not model.get("conv_only", False):
        raise ModelConfigError(f"{name}: FCPE with attention layers (conv_only false) is not supported")
    if model.get("use_harmonic_emb"):
        raise ModelConfigError(f"{name}: FCPE with a harmonic embedding is not supported")
    if str(mel.get("type", "default")).lower() not in ("default", "none"):
        raise ModelConfigError(f"{name}: FCPE mel type {mel.get('type')!r} is not supported")
    try:
        c = FcpeConfig(
            sample_rate=int(mel.get("sr", 16000)), n_mels=int(mel["num_mels"]), n_fft=int(mel.get("n_fft", 1024)),
            win_size=int(mel.get("win_size", 1024)), hop_size=int(mel.get("hop_size", 160)),
            fmin=float(mel.get("fmin") or 0.0), fmax=float(mel.get("fmax") or int(mel.get("sr", 16000)) / 2),
            hidden_dims=int(model["hidden_dims"]), n_layers=int(model["n_layers"]), out_dims=int(model["out_dims"]),
            f0_min=float(model["f0_min"]), f0_max=float(model["f0_max"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelConfigError(f"{name}: FCPE config lacks or garbles {exc}") from exc
    layers = {int(k.split(".")[2]) for k in w if isinstance(k, str) and k.startswith("net.encoder_layers.")}
    if len(layers) != c.n_layers or np.shape(w.get("input_stack.0.weight")) != (c.hidden_dims, c.n_mels, 3):
        raise ModelConfigError(f"{name}: FCPE weights disagree with its config (layers {sorted(layers)}, "
                               f"input conv {np.shape(w.get('input_stack.0.weight'))})")
    return c


def sanitize(weights: dict[str, np.ndarray], cfg: FcpeConfig) -> dict[str, np.ndarray]:
    """State dict -> MLX parameters: channels-last convs, pointwise convs as linears, weight norm folded.

    The cent table is kept (it is the checkpoint's own buffer); the Gaussian training mask and the
    unused attention-branch norms of conv-only layers are dropped.
    """
    out: dict[str, np.ndarray] = {}
    for key, value in weights.items():
        v = np.asarray(value, np.float64)
        unused_norm = key.startswith("net.encoder_layers.") and key.endswith((".norm.weight", ".norm.bias"))
        if key == "gaussian_blurred_cent_mask" or unused_norm or key.startswith("output_proj.weight_"):
            continue  # training-only mask; conv-only layers' attention norm; weight norm (folded below)
        if key in ("input_stack.0.weight", "input_stack.3.weight"):
            out[key] = v.transpose(0, 2, 1)  # (out, in, k) -> (out, k, in)
        elif key.endswith(("conformer.net.2.weight", "conformer.net.6.weight")):
            out[key] = v[..., 0]  # kernel-1 conv as a linear: (out, in)
        elif key.endswith("conformer.net.4.conv.weight"):
            out[key] = v.transpose(0, 2, 1)  # depthwise (ch, 1, k) -> (ch, k, 1)
        else:
            out[key] = v
    if "output_proj.weight_v" in weights:  # torch weight_norm(dim=0): w = g · v / ‖v‖ per output row
        v = np.asarray(weights["output_proj.weight_v"], np.float64)
        g = np.asarray(weights["output_proj.weight_g"], np.float64).reshape(-1, 1)
        out["output_proj.weight"] = g * v / np.linalg.norm(v, axis=1, keepdims=True)
    out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
    check_shapes(Fcpe(cfg), out, "FCPE")
    return out


def convert_checkpoint(obj: Any, *, name: str = "fcpe") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if not isinstance(obj, dict):
        raise UnknownModelError(f"{name}: not an FCPE checkpoint")
    cfg = config_from_checkpoint(obj, name=name)
    return cfg.to_dict(), sanitize(obj["model"], cfg)


# ----------------------------------------------------------------------------- front end


def log_mel(audio: np.ndarray, cfg: FcpeConfig) -> np.ndarray:
    """torchfcpe's mel front end: (T, n_mels) float32 with T = len // hop + 1.

    A non-centred STFT (periodic Hann) of the signal reflect-padded by (win − hop)//2 on the left
    and at least (win − hop + 1)//2 on the right (zeros when the clip is too short to reflect);
    |X| = sqrt(re² + im² + 1e-9); log(max(mel · |X|, 1e-5)); the last frame repeated once to
    reach len // hop + 1 frames.
    """
    x = np.asarray(audio, np.float32).ravel().astype(np.float64)
    n, win, hop = x.size, cfg.win_size, cfg.hop_size
    left = (win - hop) // 2
    right = max((win - hop + 1) // 2, win - n - left)
    x = np.pad(x, (left, right), mode="reflect" if right < n else "constant")
    n_frames = 1 + (x.size - cfg.n_fft) // hop
    window = np.zeros(cfg.n_fft)
    start = (cfg.n_fft - win) // 2  # torch.stft centres a shorter window in the FFT frame
    window[start:start + win] = periodic_hann(win)
    fb = mel_filterbank(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
                        htk=False).astype(np.float64)
    frames = np.lib.stride_tricks.sliding_window_view(x, cfg.n_fft)[::hop][:n_frames]
    mel = np.empty((n_frames, cfg.n_mels), np.float32)
    step = 4096  # frames per block: bounds the float64 spectrum buffer
    for s in range(0, n_frames, step):
        spec = np.fft.rfft(frames[s:s + step] * window, axis=-1)
        mag = np.sqrt(spec.real ** 2 + spec.imag ** 2 + MAG_EPS)
        mel[s:s + step] = np.log(np.maximum(mag @ fb.T, LOG_FLOOR))
    want = n // hop + 1
    if want > n_frames:
        mel = np.concatenate([mel, mel[-1:]], axis=0)
    return mel[:want]


# ----------------------------------------------------------------------------- modules


class GroupNorm(nn.Module):
    """torch GroupNorm over (time, channels of the group), channels-last, affine."""

    def __init__(self, groups: int, channels: int):
        super().__init__()
        self.groups = groups
        self.weight = mx.ones((channels,))
        self.bias = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        b, t, c = x.shape
        g = x.reshape(b, t, self.groups, c // self.groups)
        mean = mx.mean(g, axis=(1, 3), keepdims=True)
        var = mx.mean(mx.square(g - mean), axis=(1, 3), keepdims=True)
        g = (g - mean) * mx.rsqrt(var + NORM_EPS)
        return g.reshape(b, t, c) * self.weight + self.bias


class DepthwiseConv(nn.Module):
    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels)

    def __call__(self, x: mx.array) -> mx.array:
        return self.conv(x)


class ConvModule(nn.Module):
    """Conformer convolution module; list positions match torch's ``nn.Sequential`` indices."""

    def __init__(self, dim: int):
        super().__init__()
        inner = dim * EXPANSION
        self.net = [nn.LayerNorm(dim, eps=NORM_EPS), nn.Identity(), nn.Linear(dim, inner * 2), nn.Identity(),
                    DepthwiseConv(inner, KERNEL), nn.Identity(), nn.Linear(inner, dim)]

    def __call__(self, x: mx.array) -> mx.array:  # (B, T, C)
        h = self.net[2](self.net[0](x))
        a, gate = mx.split(h, 2, axis=-1)  # GLU over channels
        h = self.net[4](a * mx.sigmoid(gate))
        return self.net[6](h * mx.sigmoid(h))  # SiLU


class EncoderLayer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conformer = ConvModule(dim)

    def __call__(self, x: mx.array) -> mx.array:
        return x + self.conformer(x)


class Encoder(nn.Module):
    def __init__(self, cfg: FcpeConfig):
        super().__init__()
        self.encoder_layers = [EncoderLayer(cfg.hidden_dims) for _ in range(cfg.n_layers)]

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.encoder_layers:
            x = layer(x)
        return x


class Fcpe(nn.Module):
    """CFNaiveMelPE (conv-only): (B, T, n_mels) log-mel -> (B, T, out_dims) sigmoid salience."""

    def __init__(self, cfg: FcpeConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_dims
        self.input_stack = [nn.Conv1d(cfg.n_mels, d, 3, padding=1), GroupNorm(GROUPS, d), nn.Identity(),
                            nn.Conv1d(d, d, 3, padding=1)]
        self.net = Encoder(cfg)
        self.norm = nn.LayerNorm(d, eps=NORM_EPS)
        self.output_proj = nn.Linear(d, cfg.out_dims)
        self.cent_table = mx.zeros((cfg.out_dims,))

    def __call__(self, mel: mx.array) -> mx.array:
        x = self.input_stack[0](mel)
        x = nn.leaky_relu(self.input_stack[1](x), LEAKY_SLOPE)
        x = self.input_stack[3](x)
        x = self.net(x)
        return mx.sigmoid(self.output_proj(self.norm(x)))

    def salience(self, audio_16k: np.ndarray, *, form: str | None = None) -> np.ndarray:
        """(T, out_dims) float32 salience of 16 kHz audio, T = len // hop + 1.

        form: "mlx" (one pass of this module: the input stack's GroupNorm takes its statistics
        over every frame) or "numpy" (:mod:`mlx_rvc.forms.cpu_fcpe`, the same numbers); default:
        numpy when MLX computes on the CPU.
        """
        mel = log_mel(audio_16k, self.cfg)
        form = form or ("numpy" if forms.is_cpu() else "mlx")
        if form == "numpy":
            from ..forms.cpu_fcpe import FcpeNumpy

            if getattr(self, "_numpy_form", None) is None:
                self._numpy_form = FcpeNumpy(self)
            return self._numpy_form(mel)
        if form != "mlx":
            raise ValueError(f"form must be 'mlx' or 'numpy', got {form!r}")
        y = self(mx.array(mel[None]))
        mx.eval(y)
        return np.array(y[0], copy=False)

    def f0(self, audio_16k: np.ndarray, *, threshold: float = THRESHOLD, form: str | None = None) -> np.ndarray:
        """f0 in Hz per frame (``len // hop + 1`` frames, 10 ms), 0 where unvoiced."""
        return decode_local_argmax(self.salience(audio_16k, form=form), np.array(self.cent_table),
                                   threshold=threshold)


def decode_local_argmax(salience: np.ndarray, cent_table: np.ndarray, *, threshold: float = THRESHOLD) -> np.ndarray:
    """torchfcpe's ``local_argmax`` decoder: (T, bins) salience -> (T,) f0 Hz, 0 where unvoiced.

    Per frame: the salience-weighted mean of the cent table over the peak bin ± 4 (indices clamped
    to the table, so edge bins count more than once, as the reference gathers them), f0 = 10·2^(c/1200);
    unvoiced where the peak salience is ≤ threshold. float32 throughout, like the reference.
    """
    y = np.asarray(salience, np.float32)
    table = np.asarray(cent_table, np.float32)
    peak = np.argmax(y, axis=1)
    idx = np.clip(peak[:, None] + np.arange(-LOCAL_BINS, LOCAL_BINS + 1)[None, :], 0, y.shape[1] - 1)
    y_l = np.take_along_axis(y, idx, axis=1)
    cents = np.sum(table[idx] * y_l, axis=1, dtype=np.float32) / np.sum(y_l, axis=1, dtype=np.float32)
    f0 = (np.float32(10.0) * np.float32(2.0) ** (cents / np.float32(1200.0))).astype(np.float32)
    voiced = np.max(y, axis=1) > np.float32(threshold)
    return np.where(voiced, f0, np.float32(0.0))


def build(cfg: FcpeConfig, weights: dict) -> Fcpe:
    return load_strict(Fcpe(cfg), weights, "FCPE")


def load(model_dir: str | Path) -> Fcpe:
    """Load an imported FCPE model (a model directory written by ``mlx-rvc import``)."""
    from .. import artifact

    config, weights = artifact.read_model(model_dir, model_type="fcpe", what="an FCPE model")
    return build(FcpeConfig.from_dict(config), weights)
