"""The pure DSP of the pitch path: STFT/log-mel front end, mel filterbank, f0 utilities, RMVPE decoding."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from mlx_rvc.dsp import f0 as f0dsp
from mlx_rvc.dsp.mel import (FMAX, FMIN, HOP, N_FFT, SAMPLE_RATE, hz_to_mel_htk, log_mel, mel_filterbank,
                             mel_to_hz_htk, periodic_hann, stft_magnitude)

from .conftest import FIXTURES


def test_dsp_modules_import_no_models():
    code = ("import sys, mlx_rvc.dsp.mel, mlx_rvc.dsp.f0, mlx_rvc.dsp.chunks, mlx_rvc.dsp.filters, mlx_rvc.dsp.rms;"
            "bad=[m for m in sys.modules if m.startswith('mlx_rvc.models') or m in ('mlx.nn', 'torch')];print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_log_mel_matches_reference_front_end():
    z = np.load(FIXTURES / "rmvpe.npz")
    mel = log_mel(z["input_16k"])
    assert mel.shape == z["mel"].shape == (128, len(z["input_16k"]) // HOP + 1) and mel.dtype == np.float32
    assert np.abs(mel - z["mel"]).max() < 1e-3  # measured 2e-4 near the log floor, 4e-7 relative RMS
    assert log_mel(np.zeros(16000, np.float32)).shape == (128, 101)
    assert np.all(log_mel(np.zeros(16000, np.float32)) == np.float32(np.log(np.float32(1e-5))))


def test_mel_filterbank_is_htk_spaced_and_area_normalised():
    fb = mel_filterbank()
    assert fb.shape == (128, N_FFT // 2 + 1) and fb.dtype == np.float32
    freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    peaks = freqs[np.argmax(fb, axis=1)]
    assert FMIN <= peaks[0] < 60 and 7700 < peaks[-1] <= FMAX and np.all(np.diff(peaks) >= 0)
    centres = mel_to_hz_htk(np.linspace(hz_to_mel_htk(FMIN), hz_to_mel_htk(FMAX), 130))[1:-1]
    assert np.abs(peaks - centres).max() <= SAMPLE_RATE / N_FFT  # each peak is its centre's nearest bin
    # Slaney normalisation: every triangle has unit area in Hz (checked where it spans >= 8 bins)
    area = fb.sum(axis=1) * SAMPLE_RATE / N_FFT
    wide = (centres - np.r_[FMIN, centres[:-1]]) > 8 * SAMPLE_RATE / N_FFT
    np.testing.assert_allclose(area[wide], 1.0, rtol=0.02)
    np.testing.assert_allclose(mel_to_hz_htk(hz_to_mel_htk(np.array([30.0, 1000.0, 8000.0]))), [30, 1000, 8000])


def test_stft_of_a_sine_peaks_at_its_bin():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    k = 64  # an exact bin: 1000 Hz
    mag = stft_magnitude(np.sin(2 * np.pi * k * SAMPLE_RATE / N_FFT * t))
    assert mag.shape == (N_FFT // 2 + 1, SAMPLE_RATE // HOP + 1)
    assert np.all(np.argmax(mag[:, 5:-5], axis=0) == k)
    # periodic Hann: coherent gain N/2, so the bin holds N/4 for a unit sine
    np.testing.assert_allclose(mag[k, 5:-5], N_FFT / 4, rtol=1e-5)
    w = periodic_hann(8)
    assert w[0] == 0 and w[4] == 1 and np.allclose(w[1:4], w[7:4:-1])


def test_coarse_pitch_is_the_references():
    z = np.load(FIXTURES / "e2e_v2_48k_f0_rmvpe.npz")
    np.testing.assert_array_equal(f0dsp.coarse_pitch(z["pitchf_full"]), z["pitch_full"])
    coarse = f0dsp.coarse_pitch(np.array([0.0, 10.0, 50.0, 1100.0, 5000.0]))
    assert coarse.tolist() == [1, 1, 1, 255, 255] and coarse.dtype == np.int32
    # monotone in f0 over the voiced range, every index reachable
    hz = np.geomspace(50, 1100, 20000)
    c = f0dsp.coarse_pitch(hz)
    assert np.all(np.diff(c) >= 0) and set(c.tolist()) == set(range(1, 256))


def test_semitone_shift_and_unvoiced_filling():
    f0 = np.array([0.0, 0, 200, 0, 0, 300, 0])
    np.testing.assert_allclose(f0dsp.shift_semitones(f0, 12), 2 * f0)
    np.testing.assert_allclose(f0dsp.shift_semitones(f0, -7), f0 * 2 ** (-7 / 12))
    # linear between voiced neighbours, edges held at the nearest voiced value
    np.testing.assert_allclose(f0dsp.fill_unvoiced(f0), [200, 200, 200, 200 + 100 / 3, 200 + 200 / 3, 300, 300])
    assert np.all(f0dsp.fill_unvoiced(np.zeros(5)) == 0)


def test_salience_decoding_is_a_local_weighted_average_of_cents():
    bins = 360
    cents = f0dsp.CENTS_BASE + f0dsp.CENTS_STEP * np.arange(bins)
    sal = np.zeros((4, bins), np.float32)
    sal[0, 100] = 0.9  # one bin: its own cents
    sal[1, 200:202] = 0.5  # two equal bins: half way
    sal[2, 50] = 0.03  # at the threshold: unvoiced (the reference keeps only > threshold)
    sal[3, 10], sal[3, 300] = 0.8, 0.7  # a far bin outside the 9-bin window does not count
    f0 = f0dsp.salience_to_f0(sal, threshold=0.03)
    expect = 10 * 2 ** (np.array([cents[100], (cents[200] + cents[201]) / 2, 0, cents[10]]) / 1200)
    expect[2] = 0
    np.testing.assert_allclose(f0, expect, rtol=1e-6)
    edge = np.zeros((1, bins), np.float32)
    edge[0, 0] = 0.5  # a peak at the first bin: the window reaches past the edge (zero padded)
    np.testing.assert_allclose(f0dsp.salience_to_f0(edge), 10 * 2 ** (cents[0] / 1200), rtol=1e-6)
