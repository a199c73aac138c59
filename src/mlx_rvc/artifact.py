"""The imported-model artifact: a directory with ``config.json`` and ``model.safetensors``.

``config.json`` holds named fields (never positional lists), ``model_type`` (``rvc_voice``,
``hubert``, ``rmvpe``), ``format_version``, the source file's name and SHA-256 and the stored
dtype. ``model.safetensors`` holds channels-last weights with weight-norm already folded, in
exactly the layout the MLX modules use, so loading is a plain strict read.

Writes are atomic: everything goes to a temporary sibling directory that is renamed into
place, so a crash or a full disk never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelConfigError

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DTYPES = ("float32", "float16")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _cast(weights: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    out = {}
    for k, v in weights.items():
        v = np.asarray(v)
        if np.issubdtype(v.dtype, np.floating):
            v = v.astype(dtype)
        out[k] = np.ascontiguousarray(v)
    return out


def write_model_dir(out_dir: str | Path, *, config: dict[str, Any], weights: dict[str, np.ndarray],
                    dtype: str = "float32", extra_files: dict[str, Path] | None = None) -> Path:
    """Atomically write (or replace) a model directory.

    Args:
        out_dir: the directory to create; an existing one is replaced only once the new one is
            complete.
        config: JSON-serialisable named fields; must include ``model_type``.
        weights: name -> array; floating arrays are stored as ``dtype``.
        dtype: ``float32`` (parity) or ``float16`` (half the size).
        extra_files: destination name -> file to copy alongside (a voice's retrieval index).
    """
    from safetensors.numpy import save_file

    if "model_type" not in config:
        raise ValueError("config must name its model_type")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    config = {**config, "format_version": FORMAT_VERSION, "dtype": dtype}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        save_file(_cast(weights, dtype), str(tmp / WEIGHTS_NAME), metadata={"format": "mlx-rvc"})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for dest, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / dest)
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old.{os.getpid()}"
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_config(model_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a model directory, checked for a known format version."""
    model_dir = Path(model_dir)
    path = model_dir / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"not a model directory (no {CONFIG_NAME}): {model_dir}")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelConfigError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelConfigError(
            f"{model_dir}: format_version {config.get('format_version')!r} is not {FORMAT_VERSION}; re-import the model"
        )
    return config


def read_weights_mx(model_dir: str | Path) -> dict:
    """The stored weights as MLX arrays, read straight from the file (no numpy copy)."""
    import mlx.core as mx

    path = Path(model_dir) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"model directory has no {WEIGHTS_NAME}: {model_dir}")
    return mx.load(str(path))


def read_model(model_dir: str | Path, *, model_type: str, what: str) -> tuple[dict[str, Any], dict]:
    """Config and MLX weights of a model directory that must hold ``model_type`` (``what``: its name in errors)."""
    from .errors import UnknownModelError

    config = read_config(model_dir)
    if config.get("model_type") != model_type:
        raise UnknownModelError(f"{model_dir}: holds a {config.get('model_type')!r} model, not {what}")
    return config, read_weights_mx(model_dir)


def read_weights(model_dir: str | Path) -> dict[str, np.ndarray]:
    """The stored weights of a model directory as numpy arrays (stored dtype)."""
    from safetensors.numpy import load_file

    path = Path(model_dir) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"model directory has no {WEIGHTS_NAME}: {model_dir}")
    return load_file(str(path))
