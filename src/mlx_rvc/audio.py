"""Audio file output (atomic writes)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

SUBTYPES = {"PCM_16": 16, "PCM_24": 24, "FLOAT": 32}  # soundfile subtype -> bits


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16") -> Path:
    """Write mono audio in [-1, 1] to ``path`` atomically (a temporary file renamed into place).

    The container follows the suffix (.wav, .flac, .ogg); samples beyond ±1 are clipped.
    """
    import soundfile as sf

    path = Path(path)
    audio = np.clip(np.asarray(audio, np.float32).reshape(-1), -1.0, 1.0)
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite samples")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, audio, sample_rate, subtype=subtype)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
