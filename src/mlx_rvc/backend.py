"""Imports MLX, making sure a fast BLAS serves its CPU matrix products on Linux.

The Linux ``mlx[cpu]`` wheel links the netlib reference BLAS, which runs a 2048² float32
matmul in ~5.5 s where OpenBLAS or MKL take ~0.2 s. MLX resolves ``cblas_sgemm`` through
the dynamic linker when ``mlx.core`` is first imported, so a fast BLAS loaded globally
*before* that import takes over every CPU matmul. This module does that once, records what
happened in :data:`BLAS`, and logs a warning when it could not.

Choice, in order (``MLX_RVC_BLAS`` overrides: a library path, or ``none`` to keep MLX's own):
1. the system OpenBLAS (Debian/Ubuntu ``libopenblas0-pthread``, Fedora ``openblas``),
2. Intel MKL's ``libmkl_rt`` from the PyPI ``mkl`` wheel in this Python's prefix.
The scipy-openblas wheels cannot serve: their symbols carry a prefix MLX does not look up.

OpenBLAS picks its kernels from the CPU it detects, and releases up to at least 0.3.31 take
AVX-512 AMD processors (Zen 4/5, as virtual machines report them) for Haswell: AVX2 kernels at
about half the speed (measured here, 2048² float32: 260 -> 485 GFLOP/s). When the CPU has the
AVX-512 subsets OpenBLAS's SkylakeX kernels use and ``OPENBLAS_CORETYPE`` is not set, this
module sets it to ``SkylakeX`` while OpenBLAS loads (numpy's copy included, if numpy is not
imported yet), then removes it again so child processes see the environment they were given.
``MLX_RVC_OPENBLAS_CORETYPE`` names another core type, or ``none`` to leave detection alone; it
takes precedence over an inherited ``OPENBLAS_CORETYPE`` (which otherwise is kept as it is) and
reaches numpy's OpenBLAS only when numpy is imported after mlx_rvc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import logging
import os
import platform
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import MlxRvcError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlasInfo:
    """What serves MLX's CPU matmuls in this process."""

    name: str  # "openblas", "mkl", "accelerate", "custom", or "reference" (MLX's bundled netlib)
    path: str | None  # the library loaded globally, if any
    fast: bool  # False when MLX falls back to its slow bundled reference BLAS
    note: str  # one line saying why


def _candidate_paths() -> list[tuple[str, str]]:
    """(name, path) pairs to try, best first."""
    found: list[tuple[str, str]] = []
    patterns = [
        "/usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/*-linux-gnu/libopenblas.so.0",
        "/usr/lib64/libopenblas.so.0",
        "/usr/lib64/libopenblasp.so.0",
        "/usr/lib/libopenblas.so.0",
    ]
    for pattern in patterns:
        found.extend(("openblas", p) for p in sorted(glob.glob(pattern)))
    by_name = ctypes.util.find_library("openblas")
    if by_name:
        found.append(("openblas", by_name))
    for prefix in dict.fromkeys([sys.prefix, sys.base_prefix]):
        found.extend(("mkl", p) for p in sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*"))))
    return found


def _try_load(path: str) -> bool:
    try:
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        logger.debug("could not load %s: %s", path, exc)
        return False
    return hasattr(lib, "cblas_sgemm")


SKYLAKEX_FLAGS = {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}  # what those kernels execute


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _openblas_core() -> tuple[str | None, str]:
    """(core type to force while OpenBLAS loads or None, a note saying why)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None, ""
    choice = os.environ.get("MLX_RVC_OPENBLAS_CORETYPE", "").strip()
    if choice.lower() == "none":
        return None, "OpenBLAS's own CPU detection (MLX_RVC_OPENBLAS_CORETYPE=none)"
    if choice:
        return choice, f"OpenBLAS core {choice} (MLX_RVC_OPENBLAS_CORETYPE)"
    if "OPENBLAS_CORETYPE" in os.environ:
        inherited = os.environ["OPENBLAS_CORETYPE"]
        note = f"OPENBLAS_CORETYPE={inherited} (set by the environment)"
        if inherited.lower() != "skylakex" and SKYLAKEX_FLAGS <= _cpu_flags():
            note += "; this CPU has AVX-512: MLX_RVC_OPENBLAS_CORETYPE=SkylakeX would use its kernels"
        return None, note
    if SKYLAKEX_FLAGS <= _cpu_flags():
        return "SkylakeX", "OpenBLAS core SkylakeX (AVX-512 kernels; the CPU has them)"
    return None, "OpenBLAS's own CPU detection"


def _activate() -> BlasInfo:
    system = platform.system()
    if system == "Darwin":
        return BlasInfo("accelerate", None, True, "macOS: MLX uses Accelerate and Metal")
    if system != "Linux":
        return BlasInfo("unknown", None, False, f"{system}: no BLAS selection attempted")
    if "mlx.core" in sys.modules:
        return BlasInfo(
            "reference", None, False,
            "mlx.core was imported before mlx_rvc, too late to install a fast BLAS; import mlx_rvc first",
        )
    override = os.environ.get("MLX_RVC_BLAS", "").strip()
    if override.lower() == "none":
        return BlasInfo("reference", None, False, "MLX_RVC_BLAS=none: MLX's bundled reference BLAS")
    if override:
        if _try_load(override):
            return BlasInfo("custom", override, True, f"MLX_RVC_BLAS={override}")
        logger.warning("MLX_RVC_BLAS=%s could not be loaded or has no cblas_sgemm; trying the defaults", override)
    core, core_note = _openblas_core()
    inherited = os.environ.get("OPENBLAS_CORETYPE")
    if core is not None:
        os.environ["OPENBLAS_CORETYPE"] = core
    try:
        if core is not None and "numpy" not in sys.modules:
            import numpy  # noqa: F401  (its OpenBLAS reads the core type as it loads)
        for name, path in _candidate_paths():
            if _try_load(path):
                note = f"{name} loaded globally before MLX" + (f"; {core_note}" if name == "openblas" else "")
                return BlasInfo(name, path, True, note)
    finally:
        if core is not None:  # child processes see the environment they were given
            if inherited is None:
                os.environ.pop("OPENBLAS_CORETYPE", None)
            else:
                os.environ["OPENBLAS_CORETYPE"] = inherited
    return BlasInfo(
        "reference", None, False,
        "no OpenBLAS or MKL found: MLX's reference BLAS makes matmuls ~20x slower "
        "(install libopenblas0-pthread, or `pip install mkl`)",
    )


PRECISIONS = ("float32", "tf32")  # float32 matmuls in full precision, or TF32 where a GPU offers it
_PRECISION_NOTE = {
    "float32": "full float32 matmuls and convolutions",
    "tf32": "TF32 matmuls and convolutions on GPUs that have them (~1e-3 relative error per product)",
}


class PrecisionError(MlxRvcError, ValueError):
    """An unknown precision, or one asked for after MLX fixed it for the process."""


def _initial_precision() -> tuple[str, str]:
    """(precision, why) for this process, setting ``MLX_ENABLE_TF32`` before MLX reads it.

    MLX computes float32 matrix products (and convolutions, attention) in TF32 on CUDA GPUs and
    on Apple's M5 unless ``MLX_ENABLE_TF32=0``, which it reads once per process: about 5·10⁻⁴
    relative error per stage, enough to flip RMVPE's voicing decisions. mlx-rvc therefore asks
    for full float32 unless ``MLX_RVC_PRECISION=tf32`` says otherwise; an explicit
    ``MLX_ENABLE_TF32`` in the environment (without ``MLX_RVC_PRECISION``) is kept.
    """
    requested = os.environ.get("MLX_RVC_PRECISION", "").strip().lower()
    if requested and requested not in PRECISIONS:
        logger.warning("MLX_RVC_PRECISION=%s is not one of %s; using float32", requested, ", ".join(PRECISIONS))
        requested = "float32"
    if requested:
        os.environ["MLX_ENABLE_TF32"] = "1" if requested == "tf32" else "0"
        return requested, f"MLX_RVC_PRECISION={requested}"
    inherited = os.environ.get("MLX_ENABLE_TF32")
    if inherited is not None:
        on = inherited.strip() not in ("", "0")
        return ("tf32" if on else "float32"), f"MLX_ENABLE_TF32={inherited} (set by the environment)"
    os.environ["MLX_ENABLE_TF32"] = "0"
    return "float32", "default"


PRECISION, _PRECISION_WHY = _initial_precision()
_precision_fixed = False  # True once a conversion ran: MLX has read its setting by then


def set_precision(name: str) -> str:
    """Choose the process's matmul precision (``float32`` or ``tf32``) before any model runs.

    MLX reads its TF32 switch once per process, at its first matrix product, so a different
    precision can be chosen only before the first conversion; afterwards asking for another one
    raises :class:`PrecisionError` (asking for the current one is always fine).
    """
    global PRECISION, _PRECISION_WHY
    name = str(name).strip().lower()
    if name not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == PRECISION:
        return name
    if _precision_fixed:
        raise PrecisionError(
            f"precision {name} was asked for after MLX fixed {PRECISION} for this process: choose it "
            f"before the first conversion (MLX_RVC_PRECISION={name}, or mlx-rvc --precision {name})")
    os.environ["MLX_ENABLE_TF32"] = "1" if name == "tf32" else "0"
    PRECISION, _PRECISION_WHY = name, "set_precision"
    return name


def fix_precision() -> str:
    """Mark the precision as fixed (called as models start running); returns it."""
    global _precision_fixed
    _precision_fixed = True
    return PRECISION


BLAS: BlasInfo = _activate()
if not BLAS.fast and platform.system() == "Linux":
    logger.warning("slow BLAS: %s", BLAS.note)

import mlx.core as mx  # noqa: E402  (must follow the BLAS activation above)

__all__ = ["BLAS", "PRECISION", "PRECISIONS", "BlasInfo", "PrecisionError", "mx", "describe", "fix_precision",
           "mlx_blas_threads", "set_precision", "shared_malloc_arena"]

# (getter, setter) of the thread count of the BLAS serving MLX, by library
_THREAD_CONTROL: dict[str, tuple[str, str]] = {
    "openblas": ("openblas_get_num_threads", "openblas_set_num_threads"),
    "mkl": ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
}


@functools.cache
def _blas_thread_control() -> tuple | None:
    """(get, set) of the thread count of the BLAS serving MLX, or None where it cannot be set."""
    names = _THREAD_CONTROL.get(BLAS.name if BLAS.path else "")
    if names is None:
        return None
    lib = ctypes.CDLL(BLAS.path)
    get, set_ = getattr(lib, names[0], None), getattr(lib, names[1], None)
    return (get, set_) if get is not None and set_ is not None else None


_blas_lock = threading.Lock()
_blas_users = [0, 0]  # [blocks inside mlx_blas_threads, the count to restore when the last leaves]


@contextmanager
def mlx_blas_threads(n: int) -> Iterator[None]:
    """Let the BLAS behind MLX's CPU matmuls use ``n`` threads inside the block, then restore.

    For callers that run MLX work on several threads at once: each matmul then takes its
    share of the cores instead of all of them (no oversubscription). The count is process-wide,
    so overlapping blocks (conversions on several threads) share one setting and the last to
    leave restores the original. A no-op where the library's count cannot be set (Accelerate,
    MLX's bundled BLAS).
    """
    control = _blas_thread_control()
    if control is None:
        yield
        return
    get, set_ = control
    with _blas_lock:
        if _blas_users[0] == 0:
            _blas_users[1] = int(get())
            set_(max(1, int(n)))
        _blas_users[0] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users[0] -= 1
            if _blas_users[0] == 0:
                set_(_blas_users[1])


_ARENAS_SHARED = False


def shared_malloc_arena() -> None:
    """Have every thread allocate from glibc's shared heap instead of a heap of its own (once).

    MLX's CPU buffers come from ``malloc``; when several threads evaluate MLX work, glibc gives
    each its own arena, and buffers freed in one are never reused by another: measured on the
    decoder run by two threads, 1.35 GB resident instead of 0.84 GB for the same work and speed.
    """
    global _ARENAS_SHARED
    if _ARENAS_SHARED or platform.system() != "Linux":
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-8, 1)  # M_ARENA_MAX = 1
    except (OSError, AttributeError):  # not glibc
        pass
    _ARENAS_SHARED = True


def _device_info() -> dict:
    try:
        return dict(mx.device_info())
    except (AttributeError, RuntimeError):
        return {}


def _gib(n) -> str:
    return f"{int(n) / 2**30:.1f} GiB" if n else "-"


def _form() -> str:
    from . import forms

    return forms.active() + (" (forced)" if forms.active() != forms.device_form() else "")


def describe() -> dict[str, str]:
    """Versions, device and BLAS, for ``mlx-rvc info`` and benchmark reports."""
    import numpy as np

    try:
        from importlib.metadata import version

        mlx_version = version("mlx")
    except Exception:  # metadata missing in some editable/dev installs
        mlx_version = getattr(mx, "__version__", "unknown")
    return {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "mlx": mlx_version,
        "numpy": np.__version__,
        "device": str(mx.default_device()),
        "device_name": str(_device_info().get("device_name", "-")),
        "device_memory": _gib(_device_info().get("memory_size")),
        "form": _form(),
        "precision": f"{PRECISION} ({_PRECISION_WHY}: {_PRECISION_NOTE[PRECISION]})",
        "metal": str(mx.metal.is_available()) if hasattr(mx, "metal") else "False",
        "blas": BLAS.name,
        "blas_path": BLAS.path or "-",
        "blas_note": BLAS.note,
    }
