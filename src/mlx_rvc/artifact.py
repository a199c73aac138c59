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
import shutil
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
                    dtype: str = "float32", extra_files: dict[str, Path] | None = None,
                    overwrite: bool = True) -> Path:
    """Atomically write (or replace) a model directory.

    Args:
        out_dir: the directory to create. An existing one is replaced, once the new one is
            complete, only with ``overwrite`` and only if it is a model directory this project
            wrote or an empty one: anything else is refused (see :func:`mlx_rvc.safety.atomic_dir`).
        config: JSON-serialisable named fields; must include ``model_type``.
        weights: name -> array; floating arrays are stored as ``dtype``.
        dtype: ``float32`` (parity) or ``float16`` (half the size).
        extra_files: destination name -> file to copy alongside (a voice's retrieval index).
    """
    from safetensors.numpy import save_file

    from .safety import atomic_dir

    if "model_type" not in config:
        raise ValueError("config must name its model_type")
    config = {**config, "format_version": FORMAT_VERSION, "dtype": dtype}
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        save_file(_cast(weights, dtype), str(tmp / WEIGHTS_NAME), metadata={"format": "mlx-rvc"})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for dest, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / dest)
    return Path(out_dir)


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


def damage(model_dir: str | Path, model_type: str | None = None) -> str | None:
    """Why a model directory cannot be loaded (one line), or None when it looks whole.

    Cheap: reads ``config.json`` and the safetensors header, never the weights.
    """
    import struct

    model_dir = Path(model_dir)
    try:
        config = read_config(model_dir)
    except FileNotFoundError:
        return f"no {CONFIG_NAME}"
    except (ModelConfigError, OSError, UnicodeDecodeError) as exc:
        return str(exc).replace(str(model_dir / CONFIG_NAME), CONFIG_NAME).replace(str(model_dir), "folder")
    if not isinstance(config, dict) or "model_type" not in config:
        return f"{CONFIG_NAME} names no model_type"
    if model_type is not None and config.get("model_type") != model_type:
        return f"holds a {config.get('model_type')!r} model, not a {model_type!r} one"
    path = model_dir / WEIGHTS_NAME
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{WEIGHTS_NAME} is truncated"
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100 << 20):
                return f"{WEIGHTS_NAME} is truncated or not a safetensors file"
            header = json.loads(f.read(n))
    except FileNotFoundError:
        return f"no {WEIGHTS_NAME}"
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"{WEIGHTS_NAME} is unreadable ({type(exc).__name__})"
    if not isinstance(header, dict):
        return f"{WEIGHTS_NAME} has a malformed header"
    ends = [v.get("data_offsets", [0, 0])[1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if ends and max(ends) > size - 8 - n:
        return f"{WEIGHTS_NAME} is truncated ({size} bytes, its header needs {8 + n + max(ends)})"
    return None


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
