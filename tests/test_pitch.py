"""Pitch: RMVPE parity per stage, the DSP trackers on signals of known f0, and the shared post-processing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlx_rvc import pitch
from mlx_rvc.dsp import f0 as f0dsp
from mlx_rvc.dsp.mel import log_mel, mel_filterbank
from mlx_rvc.importer import convert, import_model, read_source
from mlx_rvc.models import rmvpe
from mlx_rvc.parity import run_parity

from .conftest import FIXTURES, MODELS

SR = 16000


def test_rmvpe_every_stage_matches_reference():
    report = run_parity(FIXTURES / "rmvpe.npz")
    assert report.passed, [c.as_dict() for c in report.checks if not c.passed]
    by_key = {c.key: c for c in report.checks}
    # measured: mel 4e-7, salience 3e-7, f0 2e-7 relative RMS
    assert by_key["mel"].diff.rel_rms < 2e-6
    assert by_key["hidden"].diff.rel_rms < 2e-6
    ref = np.load(FIXTURES / "rmvpe.npz")["f0"]
    produced = report.produced["f0"]
    assert np.array_equal(produced > 0, ref > 0)  # identical voicing decisions
    voiced = ref > 0
    cents = 1200 * np.abs(np.log2(produced[voiced] / ref[voiced]))
    assert cents.max() < 0.01


def test_rmvpe_config_is_read_from_weights_and_imports(tmp_path):
    config, _ = convert(read_source(MODELS / "rmvpe.pt"))
    assert (config["en_de_layers"], config["inter_layers"], config["n_blocks"]) == (5, 2, 1)
    assert (config["en_out_channels"], config["n_gru"], config["gru_hidden"], config["n_classes"]) == (2, 1, 256, 360)
    model = rmvpe.load(import_model(MODELS / "rmvpe.pt", out=tmp_path / "rmvpe").path)
    audio = np.load(FIXTURES / "rmvpe.npz")["input_16k"]
    np.testing.assert_allclose(model.f0(audio), np.load(FIXTURES / "rmvpe.npz")["f0"], rtol=1e-4)


def test_mel_filterbank_is_area_normalised_htk():
    fb = mel_filterbank()
    assert fb.shape == (128, 513) and fb.dtype == np.float32
    freqs = np.linspace(0, 8000, 513)
    peaks = freqs[np.argmax(fb, axis=1)]
    assert 30 <= peaks[0] < 60 and 7700 < peaks[-1] <= 8000
    assert np.all(np.diff(peaks) >= 0)


def test_coarse_pitch_is_the_references():
    z = np.load(FIXTURES / "e2e_v2_48k_f0_rmvpe.npz")
    np.testing.assert_array_equal(f0dsp.coarse_pitch(z["pitchf_full"]), z["pitch_full"])
    assert f0dsp.coarse_pitch(np.array([0.0, 10.0, 50.0, 1100.0, 5000.0])).tolist() == [1, 1, 1, 255, 255]


def test_postprocess_reproduces_reference_pitch_for_pm_and_rmvpe():
    meta = json.loads((FIXTURES / "fixtures.json").read_text())["fixtures"]
    for name in ("e2e_v2_48k_f0_rmvpe", "e2e_v1_32k_f0_pm_chunked"):
        z = np.load(FIXTURES / f"{name}.npz")
        params = meta[f"{name}.npz"]["params"]
        p_len = len(z["audio_filtered"]) // 160 + 200  # + 2·x_pad s of reflect padding
        f0 = pitch.align(z["f0_raw"].astype(np.float64), method=params["f0_method"], p_len=p_len)
        coarse, hz = pitch.postprocess(f0, semitones=params["f0_up_key"])
        np.testing.assert_array_equal(coarse, z["pitch_full"])
        np.testing.assert_allclose(hz, z["pitchf_full"], rtol=1e-6)


def test_keep_unvoiced_leaves_zeros_and_file_override(tmp_path):
    f0 = np.array([0, 0, 200, 0, 220, 0] + [210] * 200, np.float64)
    coarse, hz = pitch.postprocess(f0, unvoiced="keep", semitones=12)
    assert hz[0] == 0 and hz[3] == 0 and hz[2] == 400
    assert coarse[0] == 1
    _, filled = pitch.postprocess(f0)
    assert filled[0] == 200 and filled[3] == 210
    curve = tmp_path / "f0.csv"
    curve.write_text("0.0,100\n0.5,300\n")
    _, over = pitch.postprocess(f0, f0_file=curve, pad_frames=2)
    assert over[2] == 100 and abs(over[2 + 25] - 200) < 1e-3 and over[2 + 50] == 300 and over[60] == 210
    bad = tmp_path / "bad.csv"
    bad.write_text("hello\n")
    with pytest.raises(pitch.PitchError):
        pitch.postprocess(f0, f0_file=bad)


def _cents_error(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    both = (estimate > 0) & (truth > 0)
    return 1200 * np.abs(np.log2(estimate[both] / truth[both])), both


def _signals():
    t = np.arange(int(1.5 * SR)) / SR
    out = {}
    for f in (110.0, 220.0, 440.0):
        out[f"tone{int(f)}"] = (f * np.ones_like(t), np.sin(2 * np.pi * f * t))
    chirp_f = 120 * 2 ** (t / t[-1])  # one octave up over the signal
    out["chirp"] = (chirp_f, np.sin(2 * np.pi * np.cumsum(chirp_f) / SR))
    vib_f = 200 * 2 ** (0.5 * np.sin(2 * np.pi * 5.5 * t) / 12)  # ±50 cents at 5.5 Hz
    out["vibrato"] = (vib_f, np.sin(2 * np.pi * np.cumsum(vib_f) / SR))
    noise = np.random.default_rng(0).standard_normal(len(t)) * 1e-3  # a −60 dB floor, as recordings have
    for name, (f, x) in out.items():  # add two harmonics: voice-like, not a bare sine
        phase = 2 * np.pi * np.cumsum(f) / SR
        out[name] = (f, 0.5 * np.sin(phase) + 0.2 * np.sin(2 * phase) + 0.1 * np.sin(3 * phase) + noise)
    return out


@pytest.mark.parametrize("method", ["pm", "harvest", "dio"])
@pytest.mark.parametrize("signal_name", list(_signals()))
def test_dsp_trackers_on_known_f0(method, signal_name):
    truth_hz, x = _signals()[signal_name]
    raw = pitch.estimate(x.astype(np.float32), method=method)
    p_len = len(x) // 160
    f0 = pitch.align(raw, method=method, p_len=p_len)[:p_len]
    truth = truth_hz[np.minimum(np.arange(len(f0)) * 160, len(x) - 1)]
    inner = slice(10, len(f0) - 10)  # trackers may be unvoiced in their first and last windows
    cents, voiced = _cents_error(f0[inner], truth[inner])
    assert voiced.mean() > 0.9, f"{method} voiced only {voiced.mean():.0%} of {signal_name}"
    gross = np.mean(cents > 50)
    assert gross < 0.01, f"{method} gross pitch errors on {signal_name}: {gross:.1%}"
    assert np.median(cents) < 5  # measured ≤ 1.5 cents (vibrato, pm)


@pytest.mark.parametrize("method", ["pm", "harvest", "dio", "rmvpe"])
def test_trackers_survive_silence_clicks_dc_and_clipping(method, tmp_path):
    model = None
    if method == "rmvpe":
        model = rmvpe.load(import_model(MODELS / "rmvpe.pt", out=tmp_path / "r").path)
    n = SR
    clicks = np.zeros(n, np.float32)
    clicks[::4000] = 1.0
    clipped = np.clip(3 * np.sin(2 * np.pi * 150 * np.arange(n) / SR), -1, 1).astype(np.float32)
    for x in (np.zeros(n, np.float32), clicks, np.full(n, 0.5, np.float32), clipped):
        f0 = pitch.estimate(x, method=method, rmvpe=lambda: model)
        assert np.all(np.isfinite(f0)) and np.all(f0 >= 0)
        coarse, hz = pitch.postprocess(pitch.align(f0, method=method, p_len=n // 160))
        assert coarse.min() >= 1 and coarse.max() <= 255 and np.isfinite(hz).all()


def test_unknown_method_and_missing_model():
    with pytest.raises(pitch.PitchError, match="unknown f0 method"):
        pitch.estimate(np.zeros(1600), method="crepe-tiny")
    with pytest.raises(pitch.PitchError, match="RMVPE"):
        pitch.estimate(np.zeros(1600), method="rmvpe")


def test_dsp_modules_import_no_models():
    import subprocess
    import sys

    code = ("import sys, mlx_rvc.dsp.mel, mlx_rvc.dsp.f0, mlx_rvc.dsp.chunks, mlx_rvc.dsp.filters, mlx_rvc.dsp.rms;"
            "bad=[m for m in sys.modules if m.startswith('mlx_rvc.models') or m=='mlx.nn'];print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_log_mel_frames():
    assert log_mel(np.zeros(16000, np.float32)).shape == (128, 101)
