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
