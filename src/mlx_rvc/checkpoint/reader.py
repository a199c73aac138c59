"""Reads PyTorch ``.pth``/``.pt`` checkpoints into numpy without torch and without running code.

A PyTorch checkpoint is a pickle; unpickling can call any importable function, so loading an
untrusted file with ``pickle`` (or ``torch.load`` without ``weights_only``) runs whatever it
asks for. This reader resolves every global the pickle names through an allow-list:

* tensor rebuilds (``torch._utils._rebuild_tensor_v2`` & co.) and storage types are replaced
  by functions of ours that cut numpy arrays out of the raw storage bytes, with every
  offset, stride and size checked against the storage it points into;
* ``collections.OrderedDict`` and a few inert builtins;
* configuration objects that checkpoints carry (``argparse.Namespace``, fairseq's
  ``Dictionary``, omegaconf containers) become :class:`InertObject` records: their pickled
  state is kept as data, no method of theirs ever runs;
* numpy arrays and scalars (numeric dtypes only) are rebuilt from their raw bytes.

Anything else raises :class:`~mlx_rvc.errors.ForbiddenGlobalError` naming the global.
Both the zip format (torch ≥ 1.6) and the legacy sequential-pickle format are read. Sizes are
bounded before anything is allocated, so truncated files, zip bombs and lying headers give a
typed one-line error instead of a crash or an exhausted memory.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    CheckpointError,
    ForbiddenGlobalError,
    NotACheckpointError,
    TruncatedCheckpointError,
)

MAX_PICKLE_BYTES = 256 << 20  # the object graph of a checkpoint; real ones are a few MB at most
MAX_TOTAL_BYTES = 16 << 30  # all tensor storages together; HuBERT-large is ~1.3 GB in fp32
MAX_DEFLATE_RATIO = 200  # torch stores entries uncompressed; a re-zipped file may deflate, a bomb deflates far more
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickled value of torch's pre-1.6 format

# torch storage class name -> numpy dtype ("bfloat16" handled apart: numpy has no such dtype)
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "DoubleStorage": "<f8",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
_TORCH_DTYPE_NAMES = {
    "float32", "float", "float16", "half", "float64", "double", "bfloat16", "int64", "long",
    "int32", "int", "int16", "short", "int8", "uint8", "bool",
}


@dataclass
class InertObject:
    """Stand-in for a configuration object found in a checkpoint: its pickled data, never its code."""

    type_name: str
    args: tuple = ()
    state: Any = None

    def as_dict(self) -> dict:
        """The object's attributes when it pickled them as a dict (Namespace, Dictionary...)."""
        if isinstance(self.state, dict):
            return dict(self.state)
        if isinstance(self.state, tuple) and self.state and isinstance(self.state[0], dict):
            return dict(self.state[0])
        return {}


def _inert_class(full_name: str) -> type:
    """A class whose instances only record what the pickle gives them."""

    def __new__(cls, *args, **kwargs):  # noqa: N807 - pickle calls cls.__new__(cls, *args)
        obj = object.__new__(cls)
        obj.__dict__["_inert"] = InertObject(full_name, args)
        return obj

    def __init__(self, *args, **kwargs):  # REDUCE on the class itself: keep the arguments
        self.__dict__["_inert"].args = args

    def __setstate__(self, state):
        self.__dict__["_inert"].state = state

    return type(full_name.rsplit(".", 1)[-1], (), {
        "__new__": __new__, "__init__": __init__, "__setstate__": __setstate__, "__module__": "inert",
    })


@dataclass
class _StorageType:
    name: str
    dtype: str

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize


@dataclass
class _Storage:
    """One tensor storage: its raw bytes, viewed as the storage's dtype."""

    data: np.ndarray  # 1-D, dtype of the storage (uint16 for bfloat16)
    dtype: str
    filled: bool = True  # False while a legacy file's bytes have not been read yet


@dataclass
class _LazyTensor:
    """A tensor of a legacy checkpoint, cut out once its storage bytes have been read."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _as_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, lazy_ok: bool = True) -> np.ndarray:
    """Cut a tensor out of its storage after checking every index stays inside."""
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"tensor rebuild got {type(storage).__name__} instead of a storage")
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    offset = int(offset)
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
        raise CheckpointError(f"tensor with invalid geometry: size {size}, stride {stride}, offset {offset}")
    n = storage.data.shape[0]
    if not storage.filled and lazy_ok:
        if 0 not in size and offset + sum((s - 1) * st for s, st in zip(size, stride)) >= n:
            raise TruncatedCheckpointError(f"tensor of size {size} at offset {offset} lies outside its storage")
        return _LazyTensor(storage, offset, size, stride)
    if 0 in size:
        flat = storage.data[:0]
        out = flat.reshape(size) if size else flat
    else:
        last = offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= n:
            raise TruncatedCheckpointError(
                f"tensor of size {size} at offset {offset} reaches element {last} of a {n}-element storage"
            )
        item = storage.data.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage.data[offset:], shape=size, strides=tuple(st * item for st in stride), writeable=False
        )
        out = np.array(view, copy=True, order="C")
    if storage.dtype == "bfloat16":
        out = _bf16_to_f32(out)
    return out


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *rest):
    return _as_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _as_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *rest):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in (_rebuild_tensor_v2, _rebuild_tensor, _rebuild_parameter):
        raise ForbiddenGlobalError("checkpoint asks _rebuild_from_type_v2 to call a non-tensor function")
    return func(*args)


def _reconstructor(cls, base, state):
    """copyreg._reconstructor, limited to our inert classes."""
    if getattr(cls, "__module__", None) != "inert":
        raise ForbiddenGlobalError(f"checkpoint asks to reconstruct {cls!r}")
    return cls.__new__(cls)


class _NumpyArray:
    """numpy's ``_reconstruct`` + ``__setstate__`` pair, limited to numeric dtypes."""

    def __init__(self, *args):
        self.array: np.ndarray | None = None

    def __setstate__(self, state):
        _, shape, dtype, fortran, raw = state[:5]
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise ForbiddenGlobalError("numpy array with object dtype (it would unpickle arbitrary objects)")
        if not isinstance(raw, (bytes, bytearray)):
            raise ForbiddenGlobalError("numpy array whose data is not raw bytes")
        count = int(np.prod(shape)) if len(shape) else 1
        if count * dtype.itemsize != len(raw):
            raise TruncatedCheckpointError(f"numpy array of shape {tuple(shape)} has {len(raw)} data bytes")
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def _np_reconstruct(subtype, shape, dtype_code):
    return _NumpyArray()


def _np_dtype(name, align=False, copy=True):
    dt = np.dtype(name) if isinstance(name, str) and len(name) <= 8 else None
    if dt is None or dt.hasobject:
        raise ForbiddenGlobalError(f"numpy dtype {name!r}")
    return _NumpyDType(dt)


class _NumpyDType:
    def __init__(self, dt: np.dtype):
        self.dtype = dt

    def __setstate__(self, state):  # (version, byteorder, ...): apply the byte order only
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.dtype = self.dtype.newbyteorder(state[1]) if state[1] in "<>" else self.dtype


def _np_scalar(dtype, raw):
    dt = dtype.dtype if isinstance(dtype, _NumpyDType) else dtype
    if not isinstance(dt, np.dtype) or dt.hasobject or not isinstance(raw, bytes) or len(raw) != dt.itemsize:
        raise ForbiddenGlobalError("numpy scalar that is not plain numeric bytes")
    return np.frombuffer(raw, dtype=dt)[0]


_INERT_PREFIXES = ("fairseq.", "omegaconf.")
_INERT_NAMES = {"argparse.Namespace", "typing.Any", "pathlib.PosixPath", "pathlib.WindowsPath"}
_PLAIN = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "slice"): slice,
    ("builtins", "object"): object,
    ("torch", "Size"): tuple,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy", "dtype"): _np_dtype,
    ("numpy", "ndarray"): _NumpyArray,
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, stream, load_storage):
        super().__init__(stream)
        self._load_storage = load_storage
        self._inert: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in _PLAIN:
            return _PLAIN[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPE_NAMES:
            return f"torch.{name}"
        full = f"{module}.{name}"
        if full in _INERT_NAMES or module.startswith(_INERT_PREFIXES) or (module + ".").startswith(_INERT_PREFIXES):
            if full not in self._inert:
                self._inert[full] = _inert_class(full)
            return self._inert[full]
        raise ForbiddenGlobalError(f"checkpoint refers to forbidden global '{full}' (it could run code); refused")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage" or len(pid) < 5:
            raise CheckpointError(f"unsupported persistent id in checkpoint: {str(pid)[:80]}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported storage type {storage_type!r}")
        if not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"storage {key} with invalid size {numel!r}")
        storage = self._load_storage(key, storage_type, numel)
        if len(pid) >= 6 and pid[5] is not None:  # legacy view: (view_key, offset, view_size)
            _, off, view_size = pid[5]
            if off < 0 or off + view_size > storage.data.shape[0]:
                raise TruncatedCheckpointError(f"storage view {pid[5]!r} outside its storage")
            storage = _Storage(storage.data[off:off + view_size], storage.dtype, storage.filled)
        return storage


def _materialize(obj: Any, depth: int = 0) -> Any:
    """Replace numpy/inert stand-ins by plain values, recursively."""
    if depth > 100:
        raise CheckpointError("checkpoint object graph nested deeper than 100 levels")
    if isinstance(obj, _LazyTensor):
        return _as_tensor(obj.storage, obj.offset, obj.size, obj.stride, lazy_ok=False)
    if isinstance(obj, _NumpyArray):
        if obj.array is None:
            raise CheckpointError("numpy array without data in checkpoint")
        return obj.array
    if isinstance(obj, _NumpyDType):
        return obj.dtype
    if getattr(type(obj), "__module__", None) == "inert":
        inert = obj.__dict__["_inert"]
        inert.state = _materialize(inert.state, depth + 1)
        inert.args = _materialize(inert.args, depth + 1)
        return inert
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialize(v, depth + 1)
        return out
    if isinstance(obj, list):
        return [_materialize(v, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v, depth + 1) for v in obj)
    return obj


_MEMO_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"})


class _Tee:
    """Reads from a stream for pickletools, keeping every byte read, never asking for more than
    ``limit`` bytes in all (a lying length field must not make the stream allocate it)."""

    def __init__(self, stream, limit: int):
        self._stream, self._left = stream, limit
        self.kept = bytearray()

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._stream.read(n) if n > 0 else b""
        self._left -= len(data)
        self.kept += data
        return data

    def readline(self) -> bytes:
        out = bytearray()
        while self._left > 0:
            c = self.read(1)
            if not c:
                break
            out += c
            if c == b"\n":
                break
        return bytes(out)


def _scan_pickle(stream, limit: int) -> bytes:
    """The bytes of one pickle read from ``stream`` up to its STOP, checked before unpickling.

    Memo indices must not run ahead of the opcodes read so far: pickle's C unpickler sizes its
    memo table by the largest index it is given, so one forged ``LONG_BINPUT 0xFFFFFFF0`` would
    allocate and clear tens of GB. Real pickles number memo entries from 0, one per opcode at most.
    """
    tee = _Tee(stream, limit)
    count = 0
    try:
        for op, arg, _ in pickletools.genops(tee):
            count += 1
            if op.name in _MEMO_OPS and not (isinstance(arg, int) and 0 <= arg <= count):
                raise CheckpointError(f"checkpoint pickle is malformed: memo index {str(arg)[:20]} out of range")
    except CheckpointError:
        raise
    except (ValueError, EOFError, OverflowError, struct.error, MemoryError, RecursionError) as exc:
        if "exhausted" in str(exc) or "not enough" in str(exc) or isinstance(exc, EOFError):
            raise TruncatedCheckpointError("checkpoint pickle ends early (file truncated?)") from exc
        raise CheckpointError(f"checkpoint pickle is malformed: {type(exc).__name__}: {str(exc)[:120]}") from exc
    return bytes(tee.kept)


def _unpickle(data: bytes | io.BufferedIOBase, load_storage, limit: int = MAX_PICKLE_BYTES) -> Any:
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    stream = io.BytesIO(_scan_pickle(stream, limit))
    try:
        return _SafeUnpickler(stream, load_storage).load()
    except CheckpointError:
        raise
    except EOFError as exc:
        raise TruncatedCheckpointError("checkpoint pickle ends early (file truncated?)") from exc
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            struct.error, RecursionError, MemoryError, OverflowError) as exc:
        raise CheckpointError(f"checkpoint pickle is malformed: {type(exc).__name__}: {str(exc)[:120]}") from exc


def _read_zip(path: Path) -> Any:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, UnicodeDecodeError, ValueError, EOFError, OSError, struct.error,
            NotImplementedError) as exc:
        raise TruncatedCheckpointError(f"{path.name}: damaged zip archive ({type(exc).__name__}: {exc})") from exc
    with zf:
        infos = {i.filename: i for i in zf.infolist()}
        pkl = [n for n in infos if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pkl) != 1:
            raise NotACheckpointError(f"{path.name}: a zip file but not a PyTorch checkpoint (no single data.pkl)")
        prefix = pkl[0][: -len("data.pkl")]
        total = 0
        for info in infos.values():
            total += info.file_size
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_DEFLATE_RATIO * max(info.compress_size, 1):
                raise CheckpointError(f"{path.name}: entry {info.filename} expands {info.file_size} bytes (zip bomb?)")
        if total > MAX_TOTAL_BYTES:
            raise CheckpointError(f"{path.name}: declares {total} bytes of data, over the {MAX_TOTAL_BYTES} limit")
        if infos[pkl[0]].file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(f"{path.name}: object pickle of {infos[pkl[0]].file_size} bytes is too large")

        def read(name: str) -> bytes:
            try:
                return zf.read(name)
            except (zipfile.BadZipFile, EOFError, OSError, zlib_error, NotImplementedError, RuntimeError,
                    ValueError) as exc:
                raise TruncatedCheckpointError(f"{path.name}: entry {name} is damaged or cut short ({exc})") from exc

        storages: dict[str, _Storage] = {}

        def load_storage(key: str, stype: _StorageType, numel: int) -> _Storage:
            if key in storages:
                return storages[key]
            name = f"{prefix}data/{key}"
            info = infos.get(name)
            if info is None:
                raise TruncatedCheckpointError(f"{path.name}: storage {key} is missing from the archive")
            need = numel * stype.itemsize
            if info.file_size < need:
                raise TruncatedCheckpointError(
                    f"{path.name}: storage {key} holds {info.file_size} bytes, its tensor needs {need}"
                )
            raw = read(name)[:need]
            arr = np.frombuffer(raw, dtype="<u2" if stype.dtype == "bfloat16" else stype.dtype)
            storages[key] = _Storage(arr, stype.dtype)
            return storages[key]

        return _unpickle(read(pkl[0]), load_storage)


class _CountingReader(io.RawIOBase):
    """File wrapper that refuses to read past a byte budget (bounds the legacy format)."""

    def __init__(self, f, limit: int):
        self._f, self._left = f, limit

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self._left)
        if n <= 0:
            return 0
        data = self._f.read(n)
        b[: len(data)] = data
        self._left -= len(data)
        return len(data)


def _read_legacy(path: Path) -> Any:
    size = path.stat().st_size
    with open(path, "rb") as f:
        stream = io.BufferedReader(_CountingReader(f, size))
        no_storage = lambda *a: (_ for _ in ()).throw(CheckpointError("storage before the main object"))  # noqa: E731
        limit = min(size, MAX_PICKLE_BYTES)
        magic = _unpickle(stream, no_storage, limit)
        if magic != LEGACY_MAGIC:
            raise NotACheckpointError(f"{path.name}: a pickle, but not a PyTorch checkpoint")
        _unpickle(stream, no_storage, limit)  # protocol version
        sys_info = _unpickle(stream, no_storage, limit)
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise CheckpointError(f"{path.name}: big-endian legacy checkpoints are not supported")
        pending: dict[str, tuple[_StorageType, int, _Storage]] = {}

        def load_storage(key: str, stype: _StorageType, numel: int) -> _Storage:
            if key not in pending:
                if numel * stype.itemsize > size:
                    raise TruncatedCheckpointError(f"{path.name}: storage {key} claims more bytes than the file has")
                # filled in below, once the storage bytes that follow the object pickle are read
                store = _Storage(
                    np.zeros(numel, dtype="<u2" if stype.dtype == "bfloat16" else stype.dtype), stype.dtype, filled=False
                )
                pending[key] = (stype, numel, store)
            return pending[key][2]

        # Tensors are cut out later (_LazyTensor): the storage bytes follow the object pickle.
        obj = _unpickle(stream, load_storage, limit)
        keys = _unpickle(stream, no_storage, limit)
        if not isinstance(keys, list):
            raise CheckpointError(f"{path.name}: legacy storage key list is malformed")
        for key in keys:
            if str(key) not in pending:
                raise CheckpointError(f"{path.name}: unknown storage key {key!r}")
            stype, numel, store = pending[str(key)]
            head = stream.read(8)
            if len(head) < 8:
                raise TruncatedCheckpointError(f"{path.name}: file ends before storage {key}")
            (count,) = struct.unpack("<q", head)
            if count != numel:
                raise CheckpointError(f"{path.name}: storage {key} has {count} elements, expected {numel}")
            raw = stream.read(count * stype.itemsize)
            if len(raw) < count * stype.itemsize:
                raise TruncatedCheckpointError(f"{path.name}: storage {key} is cut short")
            store.data[:] = np.frombuffer(raw, dtype=store.data.dtype)
            store.filled = True
    if any(not store.filled for _, _, store in pending.values()):
        raise TruncatedCheckpointError(f"{path.name}: some storages were never written")
    return obj


try:  # zlib is optional in exotic Pythons
    from zlib import error as zlib_error
except ImportError:  # pragma: no cover
    zlib_error = OSError


def read_checkpoint(path: str | Path) -> Any:
    """Read a PyTorch checkpoint file into plain Python/numpy objects, executing nothing.

    Returns the pickled object with every tensor as a ``numpy.ndarray`` (bfloat16 widened to
    float32) and configuration objects as :class:`InertObject`.

    Raises:
        FileNotFoundError: the path does not exist.
        NotACheckpointError, TruncatedCheckpointError, ForbiddenGlobalError, CheckpointError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise NotACheckpointError(f"{path.name}: empty file, not a checkpoint")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        obj = _read_zip(path)
    elif head[:1] == b"\x80":
        obj = _read_legacy(path)
    else:
        raise NotACheckpointError(f"{path.name}: not a PyTorch checkpoint (neither zip nor pickle)")
    return _materialize(obj)
