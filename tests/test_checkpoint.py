"""The torch-free checkpoint reader: dtypes, strides and offsets, and refusal of hostile/broken files."""

from __future__ import annotations

import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mlx_rvc.checkpoint import InertObject, read_checkpoint
from mlx_rvc.errors import (
    CheckpointError,
    ForbiddenGlobalError,
    NotACheckpointError,
    TruncatedCheckpointError,
)

from .conftest import FIXTURES, MODELS

CKPT = FIXTURES / "checkpoints"


@pytest.mark.parametrize("name", ["tensors_zip.pt", "tensors_legacy.pt"])
def test_reads_every_dtype_stride_and_offset(name):
    expected = np.load(CKPT / "tensors_expected.npz")
    obj = read_checkpoint(CKPT / name)
    for key in expected.files:
        got = obj[key]
        assert got.dtype == expected[key].dtype, key
        assert got.shape == expected[key].shape, key
        np.testing.assert_array_equal(got, expected[key], err_msg=key)
        assert got.flags.c_contiguous, key
    assert obj["meta"]["sr"] == "40k" and obj["meta"]["list"] == [1, 2.5, "x"]
    ns = obj["meta"]["ns"]
    assert isinstance(ns, InertObject) and ns.type_name == "argparse.Namespace"
    assert ns.as_dict() == {"a": 1, "b": "two"}


def test_reads_fairseq_checkpoint_with_dictionary_inertly():
    obj = read_checkpoint(MODELS / "hubert_base.pt")
    dictionary = obj["task_state"]["dictionaries"][0]
    assert isinstance(dictionary, InertObject)
    assert dictionary.type_name == "fairseq.data.dictionary.Dictionary"
    assert dictionary.as_dict()["symbols"][:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert obj["model"]["feature_extractor.conv_layers.0.0.weight"].dtype == np.float16


class _RunsCommand:
    """Pickles to a call of os.system: what a hostile checkpoint does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _replace_data_pkl(src: Path, dst: Path, payload: bytes) -> None:
    """Copy a real torch zip checkpoint, swapping its object pickle for ``payload``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = payload if info.filename.endswith("data.pkl") else zin.read(info.filename)
            zout.writestr(info, data)


def test_hostile_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"weight": _RunsCommand(f"touch {marker}")}, protocol=2)
    hostile = tmp_path / "voice.pth"
    _replace_data_pkl(MODELS / "weights" / "v1_40k_f0.pth", hostile, payload)
    with pytest.raises(ForbiddenGlobalError) as exc:
        read_checkpoint(hostile)
    assert "posix.system" in str(exc.value) or "os.system" in str(exc.value)
    assert "\n" not in str(exc.value)
    assert not marker.exists()


@pytest.mark.parametrize("target", ["builtins.eval", "subprocess.Popen", "torch.load", "numpy.load"])
def test_forbidden_globals_are_named(tmp_path, target):
    module, name = target.rsplit(".", 1)
    payload = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\nq\x00."
    path = tmp_path / "x.pth"
    _replace_data_pkl(MODELS / "weights" / "v1_40k_f0.pth", path, payload)
    with pytest.raises(ForbiddenGlobalError, match=target.replace(".", r"\.")):
        read_checkpoint(path)


def test_hostile_legacy_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "legacy.pt"
    path.write_bytes(pickle.dumps(_RunsCommand(f"touch {marker}"), protocol=2))
    with pytest.raises(CheckpointError):
        read_checkpoint(path)
    assert not marker.exists()


def test_empty_file(tmp_path):
    p = tmp_path / "empty.pth"
    p.write_bytes(b"")
    with pytest.raises(NotACheckpointError, match="empty"):
        read_checkpoint(p)


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.pth"
    p.write_text("this is a text file, not a model\n")
    with pytest.raises(NotACheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(p)


def test_zip_without_pickle(tmp_path):
    p = tmp_path / "archive.pth"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(NotACheckpointError, match="data.pkl"):
        read_checkpoint(p)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95, 0.999])
def test_truncated_files_give_one_clear_error(tmp_path, keep):
    src = MODELS / "weights" / "v2_48k_f0.pth"
    data = src.read_bytes()
    p = tmp_path / "cut.pth"
    p.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(p)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9])
def test_truncated_legacy_files(tmp_path, keep):
    data = (CKPT / "tensors_legacy.pt").read_bytes()
    p = tmp_path / "cut.pt"
    p.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError):
        read_checkpoint(p)


def test_lying_storage_size_is_caught(tmp_path):
    """A storage entry shorter than the tensors that point into it."""
    src = MODELS / "weights" / "v1_40k_nof0.pth"
    p = tmp_path / "lying.pth"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if "/data/" in info.filename and len(data) > 64:
                data = data[:16]
            zout.writestr(info.filename, data)
    with pytest.raises(TruncatedCheckpointError):
        read_checkpoint(p)


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    p = tmp_path / "bomb.pth"
    shutil.copy(MODELS / "weights" / "v1_40k_nof0.pth", p)
    with zipfile.ZipFile(p, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data/bomb", b"\0" * (64 << 20))  # deflates ~1000:1
    with pytest.raises(CheckpointError, match="zip bomb"):
        read_checkpoint(p)


def test_random_garbage_never_crashes(tmp_path):
    rng = np.random.default_rng(0)
    src = (MODELS / "weights" / "v1_32k_f0.pth").read_bytes()
    for i in range(30):
        data = bytearray(src)
        for pos in rng.integers(0, len(data), size=8):
            data[pos] = rng.integers(0, 256)
        p = tmp_path / f"g{i}.pth"
        p.write_bytes(bytes(data))
        try:
            read_checkpoint(p)
        except CheckpointError as exc:
            assert "\n" not in str(exc)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        read_checkpoint("/nonexistent/voice.pth")
