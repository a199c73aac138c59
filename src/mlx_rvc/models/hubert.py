"""HuBERT / ContentVec content encoder on MLX (the post-LN HuBERT-base family RVC listens through).

Reads the three forms users hold — the classic fairseq ``hubert_base.pt``, and Hugging Face
directories or weight files with legacy ``weight_g``/``weight_v`` or
``parametrizations.weight.original0/1`` names — into one canonical naming (Hugging Face's).
The configuration always comes from the file: fairseq ``cfg["model"]`` (or ``args``), or the HF
``config.json``.

RVC's feature kinds: v1 = ``final_proj(hidden_states[9])`` (256-d), v2 = the last layer's
output (768-d). Input is the un-normalised 16 kHz waveform, as the reference pipeline feeds it.

The model is stated in MLX; the CPU form runs its forward pass in numpy
(:mod:`mlx_rvc.forms.cpu_hubert`). Both are checked against the reference fixtures and against
each other.
"""

from __future__ import annotations

import ast
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from .. import forms
from ..checkpoint import InertObject
from ..dsp.frames import strided_frames
from ..errors import ModelConfigError, UnknownModelError
from ..forms import cpu_hubert
from .layers import check_shapes, conv_weight_to_mlx, fold_all_weight_norms, load_strict

V1_LAYER = 9  # RVC v1 reads hidden_states[9] through final_proj
HEADS_PER_STEP = 4  # MLX path: attention heads evaluated together on long inputs (bounds the T×T buffers)


@dataclass(frozen=True)
class HubertConfig:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    conv_dim: tuple[int, ...]
    conv_kernel: tuple[int, ...]
    conv_stride: tuple[int, ...]
    conv_bias: bool
    num_conv_pos_embeddings: int  # positional conv kernel (128)
    num_conv_pos_embedding_groups: int  # positional conv groups (16)
    layer_norm_eps: float = 1e-5
    final_proj_size: int | None = 256  # None: no final_proj (v1 features unavailable)

    @property
    def downsampling(self) -> int:
        return int(np.prod(self.conv_stride))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HubertConfig":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("conv_dim", "conv_kernel", "conv_stride"):
            kw[k] = tuple(int(v) for v in kw[k])
        return cls(**kw)


def _parse_conv_layers(spec: str) -> list[tuple[int, int, int]]:
    """fairseq's ``conv_feature_layers`` string, e.g. "[(512,10,5)] + [(512,3,2)] * 4", without eval.

    Only list/tuple literals of integers, ``+`` between lists and ``*`` by an integer are accepted.
    """

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add) and isinstance(left, list) and isinstance(right, list):
                return left + right
            if isinstance(node.op, ast.Mult) and isinstance(left, list) and isinstance(right, int) and 0 <= right <= 64:
                return left * right
        raise ValueError(f"unsupported expression in conv_feature_layers: {ast.dump(node)[:60]}")

    try:
        layers = ev(ast.parse(spec, mode="eval"))
    except (SyntaxError, ValueError) as exc:
        raise ModelConfigError(f"unreadable conv_feature_layers {spec!r}: {exc}") from exc
    if not layers or not all(isinstance(t, tuple) and len(t) == 3 for t in layers):
        raise ModelConfigError(f"conv_feature_layers {spec!r} is not a list of (dim, kernel, stride)")
    return layers


def config_from_fairseq(model_cfg: dict[str, Any], weights: dict[str, np.ndarray], *, name: str) -> HubertConfig:
    if model_cfg.get("extractor_mode", "default") != "default":
        raise UnknownModelError(f"{name}: extractor_mode {model_cfg.get('extractor_mode')!r} is not supported "
                                "(only HuBERT-base's group-norm feature extractor)")
    if model_cfg.get("layer_norm_first", False):
        raise UnknownModelError(f"{name}: pre-LN (layer_norm_first) encoders are not supported")
    try:
        layers = _parse_conv_layers(str(model_cfg["conv_feature_layers"]))
        final = weights.get("final_proj.weight")
        return HubertConfig(
            hidden_size=int(model_cfg["encoder_embed_dim"]), num_hidden_layers=int(model_cfg["encoder_layers"]),
            num_attention_heads=int(model_cfg["encoder_attention_heads"]),
            intermediate_size=int(model_cfg["encoder_ffn_embed_dim"]),
            conv_dim=tuple(d for d, _, _ in layers), conv_kernel=tuple(k for _, k, _ in layers),
            conv_stride=tuple(s for _, _, s in layers), conv_bias=bool(model_cfg.get("conv_bias", False)),
            num_conv_pos_embeddings=int(model_cfg["conv_pos"]),
            num_conv_pos_embedding_groups=int(model_cfg["conv_pos_groups"]),
            final_proj_size=int(final.shape[0]) if final is not None else None,
        )
    except KeyError as exc:
        raise ModelConfigError(f"{name}: fairseq config lacks {exc}") from exc


def config_from_hf(hf: dict[str, Any], weights: dict[str, np.ndarray], *, name: str) -> HubertConfig:
    if str(hf.get("feat_extract_norm", "group")) != "group" or hf.get("do_stable_layer_norm", False):
        raise UnknownModelError(f"{name}: only post-LN HuBERT with a group-norm feature extractor is supported")
    if str(hf.get("hidden_act", "gelu")) != "gelu" or str(hf.get("feat_extract_activation", "gelu")) != "gelu":
        raise UnknownModelError(f"{name}: activation {hf.get('hidden_act')!r} is not supported (gelu only)")
    # variants transformers' HubertConfig can describe but HuBERT-base/ContentVec never use
    if hf.get("conv_pos_batch_norm", False) or not hf.get("feat_proj_layer_norm", True):
        raise UnknownModelError(f"{name}: positional-conv batch norm or a feature projection without "
                                "LayerNorm is not supported (HuBERT-base layout only)")
    final = weights.get("final_proj.weight")
    try:
        return HubertConfig(
            hidden_size=int(hf["hidden_size"]), num_hidden_layers=int(hf["num_hidden_layers"]),
            num_attention_heads=int(hf["num_attention_heads"]), intermediate_size=int(hf["intermediate_size"]),
            conv_dim=tuple(hf["conv_dim"]), conv_kernel=tuple(hf["conv_kernel"]), conv_stride=tuple(hf["conv_stride"]),
            conv_bias=bool(hf.get("conv_bias", False)),
            num_conv_pos_embeddings=int(hf["num_conv_pos_embeddings"]),
            num_conv_pos_embedding_groups=int(hf["num_conv_pos_embedding_groups"]),
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
            final_proj_size=int(final.shape[0]) if final is not None else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelConfigError(f"{name}: config.json lacks or garbles {exc}") from exc


# fairseq name fragments -> Hugging Face's (applied in order, first match per rule)
_FAIRSEQ_TO_HF = [
    ("feature_extractor.conv_layers.0.2.", "feature_extractor.conv_layers.0.layer_norm."),
    ("post_extract_proj.", "feature_projection.projection."),
    ("encoder.pos_conv.0.", "encoder.pos_conv_embed.conv."),
    (".self_attn_layer_norm.", ".layer_norm."),
    (".self_attn.", ".attention."),
    (".fc1.", ".feed_forward.intermediate_dense."),
    (".fc2.", ".feed_forward.output_dense."),
]
_DROP = ("mask_emb", "masked_spec_embed", "label_embs_concat")


def _canonical_name(key: str) -> str:
    if key.startswith("hubert."):  # some HF exports nest the encoder under "hubert."
        key = key[len("hubert."):]
    if key.startswith("layer_norm."):
        return "feature_projection." + key
    m = re.match(r"feature_extractor\.conv_layers\.(\d+)\.0\.(.+)$", key)
    if m:
        return f"feature_extractor.conv_layers.{m.group(1)}.conv.{m.group(2)}"
    for old, new in _FAIRSEQ_TO_HF:
        if old in key:
            key = key.replace(old, new)
    return key


def sanitize(weights: dict[str, np.ndarray], cfg: HubertConfig) -> dict[str, np.ndarray]:
    """Any of the three forms -> the MLX parameters (HF names, channels-last, weight norm folded, float32)."""
    renamed = {}
    for k, v in weights.items():
        if k in _DROP or k.endswith(_DROP):
            continue
        renamed[_canonical_name(k)] = np.asarray(v)
    try:
        folded = fold_all_weight_norms(renamed)
    except KeyError as exc:
        raise ModelConfigError(f"incomplete weight norm: {exc}") from exc
    out = {}
    g = cfg.num_conv_pos_embedding_groups
    for k, v in folded.items():
        v = v.astype(np.float32)
        if k == "encoder.pos_conv_embed.conv.weight":
            c_out, c_in_g, kk = v.shape  # torch grouped conv: (out, in/groups, K)
            # -> (K, groups, in_g, out_g): one batched (groups) matmul per tap
            v = np.ascontiguousarray(v.reshape(g, c_out // g, c_in_g, kk).transpose(3, 0, 2, 1))
        elif v.ndim == 3:
            v = conv_weight_to_mlx(v)
        out[k] = v
    check_weights(out, cfg)
    return out


def check_weights(weights: dict[str, Any], cfg: HubertConfig) -> None:
    check_shapes(HubertModel(cfg), weights, "encoder")


def convert_checkpoint(obj: Any, *, name: str = "encoder") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """fairseq checkpoint dict, or {"hf_config", "state_dict"} -> (named config, sanitised weights)."""
    if isinstance(obj, dict) and "state_dict" in obj and "hf_config" in obj:
        state = obj["state_dict"]
        if obj["hf_config"] is None:
            raise ModelConfigError(f"{name}: a bare HuBERT weights file; import its directory (with config.json)")
        cfg = config_from_hf(obj["hf_config"], state, name=name)
        source_format = "huggingface"
    elif isinstance(obj, dict) and "model" in obj:
        state = obj["model"]
        raw = obj.get("cfg")
        model_cfg = None
        if isinstance(raw, dict) and isinstance(raw.get("model"), (dict, InertObject)):
            model_cfg = raw["model"]
        elif obj.get("args") is not None:
            model_cfg = obj["args"]
        if isinstance(model_cfg, InertObject):
            model_cfg = model_cfg.as_dict()
        if not isinstance(model_cfg, dict):
            raise ModelConfigError(f"{name}: fairseq checkpoint without a readable cfg['model'] or args")
        cfg = config_from_fairseq(model_cfg, state, name=name)
        source_format = "fairseq"
    else:
        raise UnknownModelError(f"{name}: not a HuBERT checkpoint")
    weights = sanitize(state, cfg)
    return {**cfg.to_dict(), "source_format": source_format}, weights


# ----------------------------------------------------------------------------- modules

class ConvLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool):
        super().__init__()
        self.weight = mx.zeros((c_out, kernel, c_in))
        if bias:
            self.bias = mx.zeros((c_out,))
        self.stride = stride

    def __call__(self, x: mx.array) -> mx.array:
        if x.shape[1] < self.weight.shape[1]:
            raise ValueError(f"input of {x.shape[1]} frames is shorter than the kernel ({self.weight.shape[1]})")
        return forms.ops().strided_conv1d(x, self.weight, self.bias if "bias" in self else None, self.stride)


class GroupNormPerChannel(nn.Module):
    """Layer 0's GroupNorm (one group per channel: each channel normalised over time).

    Holds the affine parameters only: :meth:`FeatureExtractor._layer0_affine` folds the whole
    normalisation into layer 0's weights from statistics of the waveform.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = mx.ones((channels,))
        self.bias = mx.zeros((channels,))
        self.eps = eps


class FeatureExtractorLayer(nn.Module):
    def __init__(self, cfg: HubertConfig, i: int):
        super().__init__()
        c_in = 1 if i == 0 else cfg.conv_dim[i - 1]
        self.conv = ConvLayer(c_in, cfg.conv_dim[i], cfg.conv_kernel[i], cfg.conv_stride[i], cfg.conv_bias)
        if i == 0:
            self.layer_norm = GroupNormPerChannel(cfg.conv_dim[0])

    def __call__(self, x: mx.array) -> mx.array:
        """Layers 1…; layer 0 runs folded with its norm (see FeatureExtractor)."""
        return forms.ops().gelu(self.conv(x))


class FeatureExtractor(nn.Module):
    """The strided convolution stack, evaluated in blocks of output frames (bounded memory).

    Layer 0's GroupNorm normalises each channel over the whole signal. Its statistics need no
    pass over the layer's output: the layer is linear in the frames F of the waveform, so the
    channel sums are (ΣF)·W and the sums of squares diag(Wᵀ(FᵀF)W), from the k0×k0 Gram matrix
    of the frames in float64. The normalisation then folds into layer 0's weights and bias. The
    later layers are unpadded strided convolutions, so a block of output frames depends exactly
    on a known slice of layer-0 frames: the blocks join seamlessly.
    """

    BLOCK_FRAMES = 250  # output frames (5 s of audio) per block: ~0.1 GB of temporaries at HuBERT-base width
    GRAM_FRAMES = 1 << 18  # layer-0 frames per float64 chunk when summing the Gram matrix

    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.conv_layers = [FeatureExtractorLayer(cfg, i) for i in range(len(cfg.conv_dim))]
        self._k = [int(k) for k in cfg.conv_kernel]
        self._s = [int(s) for s in cfg.conv_stride]

    def _frames(self, n: int, first: int = 0) -> int:
        for k, s in zip(self._k[first:], self._s[first:]):
            n = (n - k) // s + 1
        return n

    def _layer0_affine(self, audio: np.ndarray, n0: int) -> tuple[np.ndarray, np.ndarray]:
        """Layer 0 with its GroupNorm folded in, for one waveform: weight (k0, C), bias (C,), float32."""
        k0, s0 = self._k[0], self._s[0]
        first = self.conv_layers[0]
        w = np.asarray(first.conv.weight, np.float64)[:, :, 0].T  # (k0, C)
        b = np.asarray(first.conv.bias, np.float64) if "bias" in first.conv else np.zeros(w.shape[1])
        frame_sum = np.zeros(k0)
        gram = np.zeros((k0, k0))
        for lo in range(0, n0, self.GRAM_FRAMES):
            hi = min(lo + self.GRAM_FRAMES, n0)
            f = strided_frames(audio[lo * s0: (hi - 1) * s0 + k0, None], k0, s0, hi - lo).astype(np.float64)
            frame_sum += f.sum(axis=0)
            gram += f.T @ f
        proj = frame_sum @ w  # Σ_t (F·W)[t, c]
        mean = (proj + n0 * b) / n0
        sq = (np.einsum("ic,ij,jc->c", w, gram, w) + 2 * b * proj + n0 * b * b) / n0
        var = np.maximum(sq - mean * mean, 0.0)
        gn = first.layer_norm
        scale = np.asarray(gn.weight, np.float64) / np.sqrt(var + gn.eps)
        shift = np.asarray(gn.bias, np.float64) + (b - mean) * scale
        return (w * scale).astype(np.float32), shift.astype(np.float32)

    def _run(self, audio: np.ndarray, block) -> list:
        """Per waveform of (B, N) ``audio``: the blocks ``block(waveform, lo, hi, w0, b0)`` make.

        ``[lo, hi)`` are the layer-0 frames a block of output frames needs; w0, b0 are layer 0
        with the GroupNorm folded in.
        """
        b, n = audio.shape
        k0, s0 = self._k[0], self._s[0]
        n0 = (n - k0) // s0 + 1  # layer-0 frames
        n_out = self._frames(n0, first=1) if n0 > 0 else 0
        if n_out <= 0:
            raise ValueError(f"{n} samples are too few for one feature frame")
        stride = int(np.prod(self._s[1:]))  # layer-0 frames per output frame
        reach = 1 + sum((k - 1) * int(np.prod(self._s[1:i + 1])) for i, k in enumerate(self._k[1:], start=0))
        out = []
        for i in range(b):
            w0, b0 = self._layer0_affine(audio[i], n0)
            out.append([block(audio[i], t0 * stride, (min(t0 + self.BLOCK_FRAMES, n_out) - 1) * stride + reach, w0, b0)
                        for t0 in range(0, n_out, self.BLOCK_FRAMES)])
        return out

    def _block_mlx(self, audio: np.ndarray, lo: int, hi: int, w0: np.ndarray, b0: np.ndarray) -> mx.array:
        k0, s0 = self._k[0], self._s[0]
        x = mx.array(audio[lo * s0: (hi - 1) * s0 + k0])[None, :, None]  # (1, N, 1)
        ops = forms.ops()
        h = ops.gelu(ops.strided_conv1d(x, mx.array(w0.T[:, :, None]), mx.array(b0), s0))
        for layer in self.conv_layers[1:]:
            h = layer(h)
            mx.eval(h)
        return h[0]

    def __call__(self, wav: mx.array) -> mx.array:
        """(B, N) waveform -> (B, frames, conv_dim[-1]) in MLX."""
        blocks = self._run(np.ascontiguousarray(np.asarray(wav, np.float32)), self._block_mlx)
        return mx.stack([mx.concatenate(bl) if len(bl) > 1 else bl[0] for bl in blocks])

class FeatureProjection(nn.Module):
    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.layer_norm = nn.LayerNorm(cfg.conv_dim[-1], eps=cfg.layer_norm_eps)
        self.projection = nn.Linear(cfg.conv_dim[-1], cfg.hidden_size)

    def __call__(self, x: mx.array) -> mx.array:
        return self.projection(self.layer_norm(x))

class PositionalConv(nn.Module):
    """Grouped conv (kernel K, 'same' padding K/2, last frame dropped for even K) + GELU.

    ``weight`` is (K, groups, in_g, out_g); MLX computes it as one grouped convolution.

    In numpy the convolution runs by FFT (overlap-save): HuBERT-base's kernel is 128 taps of
    16 groups of 48×48 matrices, 14 GFLOP for 30 s computed directly (1.6 s of small matmuls
    on MLX's CPU backend); in the frequency domain it is ~0.5 GFLOP (measured 0.03 s), and
    the float64 transforms add ~2e-7 relative error.
    """

    def __init__(self, cfg: HubertConfig):
        super().__init__()
        k, g, h = cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups, cfg.hidden_size
        self.weight = mx.zeros((k, g, h // g, h // g))
        self.bias = mx.zeros((h,))
        self.groups = g
        object.__setattr__(self, "_grouped", (None, None))  # (weight it came from, grouped layout); not a parameter

    def _out_frames(self, t: int) -> int:
        k = self.weight.shape[0]
        # an even kernel with K/2 padding yields one frame too many; the reference drops it
        return t + 2 * (k // 2) - k + 1 - (1 if k % 2 == 0 else 0)

    def _grouped_weight(self) -> mx.array:
        """The weight as ``mx.conv1d`` takes it with groups, (H, K, in_g), derived once per weight."""
        source, w = self._grouped
        if source is not self.weight:
            k, g, c_in, c_out = self.weight.shape
            w = self.weight.transpose(1, 3, 0, 2).reshape(g * c_out, k, c_in)  # out channel = group·out_g + o
            mx.eval(w)
            object.__setattr__(self, "_grouped", (self.weight, w))
        return w

    def __call__(self, x: mx.array) -> mx.array:
        k = self.weight.shape[0]
        y = mx.conv1d(x, self._grouped_weight(), padding=k // 2, groups=self.groups)[:, :self._out_frames(x.shape[1])]
        return forms.ops().gelu(y + self.bias)

class PosConvEmbed(nn.Module):
    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.conv = PositionalConv(cfg)

    def __call__(self, x: mx.array) -> mx.array:
        return self.conv(x)

class Attention(nn.Module):
    def __init__(self, cfg: HubertConfig):
        super().__init__()
        h = cfg.hidden_size
        self.n_heads = cfg.num_attention_heads
        self.head_dim = h // self.n_heads
        self.q_proj = nn.Linear(h, h)
        self.k_proj = nn.Linear(h, h)
        self.v_proj = nn.Linear(h, h)
        self.out_proj = nn.Linear(h, h)

    def __call__(self, x: mx.array) -> mx.array:
        b, t, h = x.shape

        def heads(y):
            return y.reshape(b, t, self.n_heads, self.head_dim).transpose(0, 2, 1, 3)

        q = heads(self.q_proj(x) * self.head_dim**-0.5)
        k, v = heads(self.k_proj(x)), heads(self.v_proj(x))
        # a few heads at a time: the (heads, T, T) score matrices dominate memory on long chunks
        step = max(1, HEADS_PER_STEP if t > 512 else self.n_heads)
        parts = []
        for i in range(0, self.n_heads, step):
            p = forms.ops().softmax(q[:, i:i + step] @ k[:, i:i + step].transpose(0, 1, 3, 2)) @ v[:, i:i + step]
            mx.eval(p)
            parts.append(p)
        o = parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=1)
        return self.out_proj(o.transpose(0, 2, 1, 3).reshape(b, t, h))

class FeedForward(nn.Module):
    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.intermediate_dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.output_dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def __call__(self, x: mx.array) -> mx.array:
        return self.output_dense(forms.ops().gelu(self.intermediate_dense(x)))

class EncoderLayer(nn.Module):
    """Post-LN: x = LN(x + attn(x)); x = LN'(x + ffn(x))."""

    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.feed_forward = FeedForward(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def __call__(self, x: mx.array) -> mx.array:
        x = self.layer_norm(x + self.attention(x))
        return self.final_layer_norm(x + self.feed_forward(x))

class Encoder(nn.Module):
    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.pos_conv_embed = PosConvEmbed(cfg)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.layers = [EncoderLayer(cfg) for _ in range(cfg.num_hidden_layers)]


class HubertModel(nn.Module):
    """HuBERT-base with RVC's ``final_proj``.

    In the CPU form the whole forward pass runs in numpy (:mod:`mlx_rvc.forms.cpu_hubert`).
    """

    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.cfg = cfg
        self.feature_extractor = FeatureExtractor(cfg)
        self.feature_projection = FeatureProjection(cfg)
        self.encoder = Encoder(cfg)
        if cfg.final_proj_size:
            self.final_proj = nn.Linear(cfg.hidden_size, cfg.final_proj_size)

    def __call__(self, wav: mx.array | np.ndarray, *, up_to_layer: int | None = None,
                 trace: dict | None = None) -> list:
        """Hidden states 0..up_to_layer (default: all) for a (B, N) 16 kHz waveform.

        hidden_states[0] is the encoder input (LayerNorm(x + pos_conv(x))), [n] the output of
        layer n, as Hugging Face numbers them. Returns MLX arrays, or numpy arrays when
        :func:`use_numpy` (as are the ``trace`` entries: conv features, projection, pos conv).
        """
        last = self.cfg.num_hidden_layers if up_to_layer is None else up_to_layer
        if use_numpy():
            return cpu_hubert.hidden_states(self, wav, last, trace)
        enc = self.encoder
        feats = self.feature_extractor(mx.array(wav))
        x = self.feature_projection(feats)
        pos = enc.pos_conv_embed(x)
        if trace is not None:
            trace.update(conv_features=feats, projected_features=x, pos_conv_out=pos)
        x = enc.layer_norm(x + pos)
        states = [x]
        for layer in enc.layers[:last]:
            x = layer(x)
            states.append(x)
        return states

    def project(self, state):
        """``final_proj`` of a hidden state (MLX or numpy, as :meth:`__call__` returned it)."""
        if isinstance(state, np.ndarray):
            return cpu_hubert.linear(self.final_proj, state)
        return self.final_proj(state)

    def features(self, audio: np.ndarray, *, version: str) -> np.ndarray:
        """RVC content features of a mono 16 kHz float waveform: (frames, 256) for v1, (frames, 768) for v2."""
        if version not in ("v1", "v2"):
            raise ValueError(f"unknown RVC feature version {version!r}")
        min_len = _receptive_length(self.cfg)
        if len(audio) < min_len:
            raise ValueError(f"{len(audio)} samples are fewer than the encoder's {min_len}-sample receptive field")
        wav = np.asarray(audio, np.float32)[None]
        if version == "v2":
            out = self(wav)[-1]
        elif not self.cfg.final_proj_size or self.cfg.num_hidden_layers < V1_LAYER:
            raise ValueError("this encoder cannot make v1 features (needs final_proj and ≥ 9 layers)")
        else:
            out = self.project(self(wav, up_to_layer=V1_LAYER)[V1_LAYER])
        if isinstance(out, mx.array):
            mx.eval(out)
        return np.asarray(out[0])


def use_numpy() -> bool:
    """The CPU form runs the model in numpy (:mod:`mlx_rvc.forms.cpu_hubert`)."""
    return forms.is_cpu()


def _receptive_length(cfg: HubertConfig) -> int:
    """Samples needed for one output frame of the convolutional feature extractor."""
    n = 1
    for k, s in reversed(list(zip(cfg.conv_kernel, cfg.conv_stride))):
        n = (n - 1) * s + k
    return n


BASE = HubertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                    conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                    conv_bias=False, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
                    final_proj_size=256)  # HuBERT-base / ContentVec, as RVC uses it


def random_weights(cfg: HubertConfig, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Untrained weights in the sanitised layout (demos and benchmarks): uniform ±1/√fan_in, norms at identity."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, value in tree_flatten(HubertModel(cfg).parameters()):
        shape = tuple(value.shape)
        if "norm" in key:
            w = np.ones(shape) if key.endswith("weight") else np.zeros(shape)
        elif key.endswith("bias"):
            w = rng.uniform(-0.02, 0.02, shape)
        else:
            fan_in = int(np.prod(shape[1:])) if key != "encoder.pos_conv_embed.conv.weight" else shape[0] * shape[2]
            w = rng.uniform(-1, 1, shape) / np.sqrt(fan_in)
        out[key] = w.astype(np.float32)
    return out


def build(cfg: HubertConfig, weights: dict) -> HubertModel:
    return load_strict(HubertModel(cfg), weights, "encoder")


def load(model_dir: str | Path) -> HubertModel:
    """Load an imported content encoder (a model directory written by ``mlx-rvc import``)."""
    from .. import artifact

    config, weights = artifact.read_model(model_dir, model_type="hubert", what="a content encoder")
    return build(HubertConfig.from_dict(config), weights)


__all__ = ["HubertConfig", "HubertModel", "convert_checkpoint", "sanitize", "build", "load"]
