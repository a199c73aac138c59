"""The ``mlx-rvc`` command: parity exit codes and outputs, import errors, info, demo, compare."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from mlx_rvc.cli import app

from .conftest import FIXTURES, MODELS

runner = CliRunner()


def test_parity_passes_and_saves_every_produced_array(tmp_path):
    out = tmp_path / "produced.npz"
    result = runner.invoke(app, ["parity", str(FIXTURES / "synth_v1_48k_f0.npz"), "--json", "--save", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)[0]
    assert report["passed"] and report["kind"] == "synth"
    audio = next(c for c in report["checks"] if c["key"] == "audio")
    assert audio["corr"] > 0.99999 and audio["audio"]["spec_corr"] > 0.99999
    saved = np.load(out)
    reference = np.load(FIXTURES / "synth_v1_48k_f0.npz")
    for key in ("audio", "m_p", "z", "sine_waves", "dec_ups0_out"):
        assert saved[key].shape == reference[key].shape
    np.testing.assert_allclose(saved["audio"], reference["audio"], atol=1e-5)


def test_parity_fails_with_status_1_when_the_reference_disagrees(tmp_path):
    """A fixture whose stored audio was altered must fail the audio check."""
    shutil.copytree(FIXTURES / "models", tmp_path / "models")
    shutil.copy(FIXTURES / "fixtures.json", tmp_path)
    data = dict(np.load(FIXTURES / "synth_v2_40k_nof0.npz"))
    data["audio"] = data["audio"] * 1.01  # a 1 % gain error
    np.savez_compressed(tmp_path / "synth_v2_40k_nof0.npz", **data)
    result = runner.invoke(app, ["parity", str(tmp_path / "synth_v2_40k_nof0.npz"), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)[0]
    failed = [c["key"] for c in report["checks"] if not c["passed"]]
    assert failed == ["audio"]


def test_parity_missing_fixture_is_one_line():
    result = runner.invoke(app, ["parity", "/nonexistent/synth_x.npz"])
    assert result.exit_code == 2
    assert "fixture not found" in result.output


def test_import_error_is_one_line(tmp_path):
    bad = tmp_path / "voice.pth"
    bad.write_text("not a model")
    result = runner.invoke(app, ["import", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "not a PyTorch checkpoint" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_import_voice(tmp_path):
    result = runner.invoke(app, ["import", str(MODELS / "weights" / "v2_32k_nof0.pth"), "--out", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "v" / "model.safetensors").is_file()
    again = runner.invoke(app, ["import", str(MODELS / "weights" / "v2_32k_nof0.pth"), "--out", str(tmp_path / "v")])
    assert "already imported" in again.output


def test_info_reports_blas():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    assert "blas" in result.output and "mlx" in result.output


@pytest.mark.skipif(sys.platform != "linux", reason="BLAS selection is a Linux concern")
def test_fast_blas_is_active_on_linux_and_can_be_disabled():
    from mlx_rvc.backend import BLAS

    assert BLAS.fast, BLAS.note  # CI installs OpenBLAS; a slow BLAS makes everything ~30x slower
    code = "import mlx_rvc.backend as b; print(b.BLAS.name)"
    env = {**os.environ, "MLX_RVC_BLAS": "none"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "reference"
    late = "import mlx.core; import mlx_rvc.backend as b; print(b.BLAS.name, b.BLAS.fast)"
    out = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "reference False"
    assert "too late" in out.stderr


def test_openblas_core_type_choice(monkeypatch):
    import mlx_rvc.backend as backend

    monkeypatch.setattr(backend.platform, "system", lambda: "Linux")
    monkeypatch.setattr(backend.platform, "machine", lambda: "x86_64")
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.delenv("MLX_RVC_OPENBLAS_CORETYPE", raising=False)
    monkeypatch.setattr(backend, "_cpu_flags", lambda: {"avx2", "fma"} | backend.SKYLAKEX_FLAGS)
    assert backend._openblas_core()[0] == "SkylakeX"
    monkeypatch.setattr(backend, "_cpu_flags", lambda: {"avx2", "fma", "avx512f"})  # not the whole set
    assert backend._openblas_core()[0] is None
    monkeypatch.setenv("MLX_RVC_OPENBLAS_CORETYPE", "Zen")
    assert backend._openblas_core()[0] == "Zen"
    monkeypatch.setenv("MLX_RVC_OPENBLAS_CORETYPE", "none")
    assert backend._openblas_core()[0] is None
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")  # the environment's choice beats detection...
    monkeypatch.delenv("MLX_RVC_OPENBLAS_CORETYPE")
    monkeypatch.setattr(backend, "_cpu_flags", lambda: {"avx2", "fma"} | backend.SKYLAKEX_FLAGS)
    core, note = backend._openblas_core()
    assert core is None and "Haswell" in note and "MLX_RVC_OPENBLAS_CORETYPE=SkylakeX" in note
    monkeypatch.setattr(backend, "_cpu_flags", lambda: {"avx2", "fma"})  # no AVX-512: no hint
    assert "MLX_RVC_OPENBLAS_CORETYPE" not in backend._openblas_core()[1]
    monkeypatch.setenv("MLX_RVC_OPENBLAS_CORETYPE", "SkylakeX")  # ...and mlx-rvc's own setting beats it
    assert backend._openblas_core()[0] == "SkylakeX"


@pytest.mark.skipif(sys.platform != "linux", reason="BLAS selection is a Linux concern")
def test_mlx_blas_threads_overlapping_blocks_restore_the_original_count():
    """The decoder's workers set MLX's BLAS to one thread each; conversions on several threads
    overlap those blocks, and the count must come back only when the last one leaves."""
    import ctypes

    from mlx_rvc.backend import BLAS, mlx_blas_threads

    if BLAS.name != "openblas":
        pytest.skip("thread count checked through OpenBLAS")
    get = ctypes.CDLL(BLAS.path).openblas_get_num_threads
    original = get()
    a, b = mlx_blas_threads(1), mlx_blas_threads(1)
    a.__enter__()
    b.__enter__()
    assert get() == 1
    a.__exit__(None, None, None)  # the first to leave: the other is still inside
    assert get() == 1
    b.__exit__(None, None, None)
    assert get() == original


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "mlx_rvc", "--help"], capture_output=True, text=True, check=True)
    assert "parity" in out.stdout and "import" in out.stdout


def test_demo_converts_the_bundled_clip_end_to_end(tmp_path):
    import soundfile as sf

    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "untrained" in result.output and "synthesis" in result.output
    audio, sr = sf.read(tmp_path / "demo_converted.wav")
    assert sr == 40000 and np.isfinite(audio).all()
    assert abs(len(audio) / sr - 6.87) < 0.1
    assert 0.005 < np.sqrt(np.mean(audio**2)) < 0.9
    assert (tmp_path / "demo_comparison.png").stat().st_size > 10_000
    assert (tmp_path / "models" / "voice" / "model.safetensors").is_file()


def test_compare_reports_metrics_and_refuses_non_finite_audio(tmp_path):
    import soundfile as sf

    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(tmp_path / "a.wav", tone, 16000, subtype="FLOAT")
    sf.write(tmp_path / "b.wav", np.repeat(tone, 3), 48000, subtype="FLOAT")  # same tone, held 3x at 48 kHz
    png = tmp_path / "c.png"
    result = runner.invoke(app, ["compare", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--json", "--png", str(png)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["sample_rate_b"] == 48000 and report["seconds_b"] == 1.0 and png.stat().st_size > 0
    assert report["spec_corr"] > 0.99 and 0.9 < report["rms_ratio"] < 1.1  # a resampled sample-and-hold copy
    sf.write(tmp_path / "nan.wav", np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT")
    result = runner.invoke(app, ["compare", str(tmp_path / "a.wav"), str(tmp_path / "nan.wav")])
    assert result.exit_code == 2 and "nan.wav: contains NaN" in result.output
