"""One rule for every file the project writes.

* A library name is one plain path component: never ``.``/``..``, a separator, absolute, empty,
  hidden or with control characters (:func:`check_name`).
* Nothing is written over one of the command's inputs (:func:`check_not_input`), and an existing
  output is replaced only when the caller says so; a folder (or anything that is not a file this
  project writes) is never replaced (:func:`check_target`).
* Every output is written to a temporary sibling and renamed into place when complete
  (:func:`atomic_file`, :func:`atomic_dir`), with the permissions the umask gives a new file (not
  ``mkstemp``'s 0600).
* Temporary names carry the writing process's id (``.mlx-rvc-tmp.<pid>.…``): they are removed on
  every exit the process can catch (SIGINT, SIGTERM, SIGHUP: see :func:`install_signal_handlers`),
  and ones left by a killed process are removed by the next run that writes into that folder
  (:func:`clean_stale`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import MlxRvcError

TEMP_PREFIX = ".mlx-rvc-tmp."
_TEMP_RE = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)\.")
MAX_NAME = 64  # characters in a library name


class InvalidNameError(MlxRvcError, ValueError):
    """A model name that is not one plain path component."""


class UnsafeOutputError(MlxRvcError, ValueError):
    """An output that would replace an input, a folder, or something else this project did not write."""


class OutputExistsError(MlxRvcError, FileExistsError):
    """The output exists and replacing it was not asked for (``--overwrite``)."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so that every ``with``/``finally`` cleans up."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


def check_name(name: str, *, what: str = "name") -> str:
    """``name`` if it is a plain file-name component safe inside the library; else InvalidNameError."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidNameError(f"invalid {what}: it is empty")
    reason = None
    if name in (".", ".."):
        reason = "is a relative folder reference"
    elif "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        reason = "contains a path separator"
    elif os.path.isabs(name) or re.match(r"^[A-Za-z]:", name):
        reason = "is an absolute path"
    elif name.startswith("."):
        reason = "starts with '.' (hidden)"
    elif any(unicodedata.category(c).startswith("C") for c in name):
        reason = "contains control or invisible characters"
    elif name != name.strip():
        reason = "starts or ends with white space"
    elif len(name) > MAX_NAME:
        reason = f"is longer than {MAX_NAME} characters"
    if reason:
        raise InvalidNameError(f"invalid {what} {name!r}: it {reason}; use one plain name like 'my_voice'")
    return name


# --- inputs and targets ---------------------------------------------------------------------------

def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_not_input(target: str | Path, inputs: Iterable[str | Path], *, what: str = "output") -> None:
    """Refuse a target that is (or is a link to) one of the inputs, or a folder holding one."""
    target = Path(target)
    real = Path(os.path.realpath(target))
    for inp in inputs:
        inp = Path(inp)
        if target.exists() and inp.exists() and _same(target, inp):
            raise UnsafeOutputError(f"{what} {target} is the input {inp}; choose another path")
        if real == Path(os.path.realpath(inp)):
            raise UnsafeOutputError(f"{what} {target} is the input {inp}; choose another path")
        if real in Path(os.path.realpath(inp)).parents and not target.is_file():
            raise UnsafeOutputError(f"{what} {target} is a folder holding the input {inp}")


def check_target(target: str | Path, *, overwrite: bool, what: str = "output", folder: bool = False) -> None:
    """Whether ``target`` may be written: absent, or (with ``overwrite``) something replaceable.

    A file target may replace only a regular file; a folder target (``folder=True``) only a model
    folder this project wrote (``config.json`` with a ``model_type``) or an empty folder.
    Raises OutputExistsError (skip it) or UnsafeOutputError (never).
    """
    target = Path(target)
    if not os.path.lexists(target):
        return
    if folder:
        if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
            return
        if not _is_model_dir(target):
            raise UnsafeOutputError(f"{what} {target} exists and is not a model folder mlx-rvc wrote; "
                                    "it is left alone: choose a new path")
    elif not target.is_file():  # a folder, a device, a dangling link...
        raise UnsafeOutputError(f"{what} {target} exists and is not a file; it is left alone")
    if not overwrite:
        raise OutputExistsError(f"{what} {target} exists; --overwrite replaces it")


def _is_model_dir(path: Path) -> bool:
    import json

    if not path.is_dir() or path.is_symlink():
        return False
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "model_type" in config and "format_version" in config


def writable_folder(folder: str | Path, *, what: str = "output folder") -> Path:
    """Create ``folder`` (and parents) if needed; a one-line error when that is impossible."""
    folder = Path(folder) if str(folder) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise UnsafeOutputError(f"{what} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnsafeOutputError(f"cannot create {what} {folder}: {exc.strerror or exc}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UnsafeOutputError(f"{what} {folder} is not writable")
    return folder


# --- temporary files ------------------------------------------------------------------------------

_live: set[str] = set()  # temporaries of this process not yet renamed or removed
_live_lock = threading.Lock()


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask can only be read by setting it, which races with threads


def _umask() -> int:
    return _UMASK


def _register(path: str) -> None:
    with _live_lock:
        _live.add(path)


def _forget(path: str) -> None:
    with _live_lock:
        _live.discard(path)


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        pass
    _forget(path)


@atexit.register
def remove_temporaries() -> None:
    """Remove every temporary this process still holds (also runs at exit)."""
    with _live_lock:
        paths = list(_live)
    for p in paths:
        _remove(p)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def clean_stale(folder: str | Path) -> list[Path]:
    """Remove temporaries in ``folder`` left by processes that no longer run; returns them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m and not _pid_alive(int(m.group(1))):
            _remove(entry.path)
            removed.append(Path(entry.path))
    return removed


def make_temp(folder: str | Path, suffix: str = "", *, directory: bool = False) -> str:
    """Create a temporary file (or folder) in ``folder``, named with this process's id and removed
    at exit if still there; stale temporaries of dead processes in ``folder`` are removed first."""
    return _make_temp(Path(folder), suffix, directory=directory)


def discard(path: str | Path) -> None:
    """Remove a temporary made by :func:`make_temp` (if still there) and stop tracking it."""
    _remove(str(path))


def _make_temp(folder: Path, suffix: str, *, directory: bool) -> str:
    clean_stale(folder)
    prefix = f"{TEMP_PREFIX}{os.getpid()}."
    if directory:
        path = tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=folder)
        os.chmod(path, 0o777 & ~_umask())
    else:
        fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
        os.close(fd)
        os.chmod(path, 0o666 & ~_umask())
    _register(path)
    return path


def _place(tmp: str, target: Path, *, overwrite: bool) -> None:
    """Rename a complete temporary onto ``target``; without ``overwrite``, never over an existing one."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:  # an exclusive link fails if the target appeared meanwhile
        os.link(tmp, target)
    except FileExistsError as exc:
        raise OutputExistsError(f"output {target} exists; --overwrite replaces it") from exc
    except OSError:  # file systems without hard links
        if os.path.lexists(target):
            raise OutputExistsError(f"output {target} exists; --overwrite replaces it") from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_file(target: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = (),
                what: str = "output") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; when the block succeeds it becomes ``target``.

    The checks come first (:func:`check_not_input`, :func:`check_target`); on any error (or a
    caught signal) the temporary is removed and ``target`` is untouched.
    """
    target = Path(target)
    check_not_input(target, inputs, what=what)
    check_target(target, overwrite=overwrite, what=what)
    folder = writable_folder(target.parent, what=f"folder of {what}")
    tmp = _make_temp(folder, target.suffix, directory=False)
    try:
        yield Path(tmp)
        _place(tmp, target, overwrite=overwrite)
        _forget(tmp)
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)
        _forget(tmp)


@contextlib.contextmanager
def atomic_dir(target: str | Path, *, overwrite: bool = False, what: str = "model folder") -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; when the block succeeds it becomes ``target``.

    An existing ``target`` is replaced only with ``overwrite`` and only if it is a model folder this
    project wrote (or empty): a user's folder is never deleted.
    """
    target = Path(target)
    check_target(target, overwrite=overwrite, what=what, folder=True)
    folder = writable_folder(target.parent, what=f"folder of {what}")
    tmp = _make_temp(folder, ".partial", directory=True)
    old = None
    try:
        yield Path(tmp)
        if os.path.lexists(target):
            check_target(target, overwrite=overwrite, what=what, folder=True)
            old = _make_temp(folder, ".old", directory=True)
            os.rmdir(old)
            os.replace(target, old)  # moved aside, removed once the new one is in place
        try:
            os.rename(tmp, target)
        except OSError:
            if old is not None:
                os.replace(old, target)
                old = None
            raise
        _forget(tmp)
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)
        _forget(tmp)
        if old is not None:
            _remove(old)


# --- signals --------------------------------------------------------------------------------------

def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` (SIGINT is already KeyboardInterrupt).

    Only possible in the main thread; elsewhere this does nothing (the exit handler and the next
    run's :func:`clean_stale` still remove temporaries).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_terminated)
