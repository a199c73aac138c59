"""Pitch: the trackers behind one interface (DSP trackers on signals of known f0, in cents), hostile
inputs, and the shared post-processing checked against the reference pipeline's own pitch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlx_rvc import pitch
from mlx_rvc.errors import MlxRvcError
from mlx_rvc.importer import import_model
from mlx_rvc.models import rmvpe

from .conftest import FIXTURES, MODELS

SR = 16000


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
    with_header = tmp_path / "f0_out.csv"  # what `mlx-rvc f0 --out` writes
    with_header.write_text("seconds,hz\n0.00,100.000\n0.50,300.000\n")
    _, again = pitch.postprocess(f0, f0_file=with_header, pad_frames=2)
    np.testing.assert_array_equal(again, over)
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
    # clips shorter than pm's and RMVPE's analysis windows (Praat's three periods of 50 Hz, 60 ms;
    # RMVPE's 512-sample reflect padding): every frame unvoiced, no exception
    for length in (1, 300, 900):
        x = 0.5 * np.sin(2 * np.pi * 200 * np.arange(length) / SR).astype(np.float32)
        f0 = pitch.align(pitch.estimate(x, method=method, rmvpe=lambda: model), method=method,
                         p_len=length // 160 + 1)
        assert f0.shape == (length // 160 + 1,) and np.all(np.isfinite(f0)) and np.all(f0 >= 0)
        if length < {"pm": 960, "rmvpe": 513}.get(method, 0):
            assert not f0.any()


def test_unknown_method_and_missing_model(tmp_path, monkeypatch):
    with pytest.raises(pitch.PitchError, match="unknown f0 method"):
        pitch.estimate(np.zeros(1600), method="yin")
    monkeypatch.setenv("MLX_RVC_HOME", str(tmp_path))  # an empty library: no FCPE/CREPE imported
    for method, file in (("fcpe", "fcpe_c_v001.pt"), ("crepe", "full.pth"), ("crepe-tiny", "tiny.pth")):
        with pytest.raises(MlxRvcError, match=f"f0 method {method} needs a pitch model: import {file}"):
            pitch.estimate(np.zeros(1600), method=method)
    with pytest.raises(pitch.PitchError, match="RMVPE"):
        pitch.estimate(np.zeros(1600), method="rmvpe")
