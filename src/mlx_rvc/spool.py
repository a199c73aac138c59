"""Signals too long to hold: appended to a temporary raw file, read back in blocks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def _default_folder() -> str:
    import tempfile

    return tempfile.gettempdir()


class Spool:
    """A float32 sequence of rows (``width`` values each; 1 = a plain signal) in a temporary file.

    Reads go through the page cache, not a memory map, so a long sequence never counts towards
    the process's resident memory. The file is removed on close (or exit of a ``with`` block).
    """

    def __init__(self, folder: str | Path | None = None, *, width: int = 1):
        from .safety import discard, make_temp

        path = make_temp(folder if folder is not None else _default_folder(), ".f32")
        try:
            self._file = open(path, "w+b")
        except BaseException:
            discard(path)
            raise
        if os.name == "posix":  # an unlinked file lives while open and vanishes with the process, even on SIGKILL
            discard(path)
        else:
            self._path = path
        self.width = width
        self._n = 0
        self.peak = 0.0  # largest |value| appended

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        if getattr(self, "_path", None):
            from .safety import discard

            discard(self._path)

    def __len__(self) -> int:
        return self._n

    def append(self, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, np.float32)
        rows = x.shape[0] if x.ndim > 1 or self.width == 1 else 1
        if x.size != rows * self.width:
            raise ValueError(f"expected rows of {self.width} values, got shape {x.shape}")
        if x.size:
            self.peak = max(self.peak, float(np.abs(x).max()))
        self._file.seek(self._n * self.width * 4)
        self._file.write(x.tobytes())
        self._n += rows

    def blocks(self, size: int) -> Iterator[np.ndarray]:
        """The whole sequence, ``size`` rows at a time."""
        for lo in range(0, self._n, size):
            yield self.read(lo, min(lo + size, self._n))

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo..hi``; zeros outside the sequence. Shape (hi − lo,) or (hi − lo, width)."""
        out = np.zeros((hi - lo, self.width) if self.width > 1 else hi - lo, np.float32)
        a, b = max(lo, 0), min(hi, self._n)
        if b > a:
            self._file.seek(a * self.width * 4)
            data = np.frombuffer(self._file.read((b - a) * self.width * 4), np.float32)
            out[a - lo: b - lo] = data.reshape(out[a - lo: b - lo].shape)
        return out
