"""The pipeline's pure steps against the reference's e2e fixtures: filter, chunk plan, RMS mix, retrieval."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlx_rvc.dsp.chunks import ChunkConfig, plan_chunks
from mlx_rvc.dsp.filters import highpass
from mlx_rvc.dsp.rms import linear_resize, mix_rms
from mlx_rvc.retrieval import RetrievalIndexError, blend, load_index

from .conftest import FIXTURES

CASES = {
    "e2e_v2_48k_f0_rmvpe": "added_IVF10_Flat_nprobe_1_oracle_e2e_v2_48k_f0_rmvpe_v2.index",
    "e2e_v1_40k_nof0": "added_IVF10_Flat_nprobe_1_oracle_e2e_v1_40k_nof0_v1.index",
    "e2e_v1_32k_f0_pm_chunked": None,
}


def _case(name):
    entry = json.loads((FIXTURES / "fixtures.json").read_text())["fixtures"][f"{name}.npz"]
    return np.load(FIXTURES / f"{name}.npz"), entry


@pytest.mark.parametrize("name", CASES)
def test_highpass_and_chunk_plan_match_reference(name):
    z, entry = _case(name)
    filtered = highpass(z["input_audio_16k"])
    # the fixture stores the float64 filter output as float32: half an ULP of ~0.8 is 3e-8
    np.testing.assert_allclose(filtered, z["audio_filtered"], rtol=0, atol=6e-8)
    c = entry["config"]
    chunks = plan_chunks(filtered, ChunkConfig(c["x_pad"], c["x_query"], c["x_center"], c["x_max"]))
    assert [ch.start for ch in chunks] == z["chunk_start"].tolist()
    assert [ch.stop for ch in chunks] == z["chunk_end"].tolist()


@pytest.mark.parametrize("name", ["e2e_v2_48k_f0_rmvpe", "e2e_v1_32k_f0_pm_chunked"])
def test_rms_mix_matches_reference(name):
    z, entry = _case(name)
    out = mix_rms(highpass(z["input_audio_16k"]), 16000, z["audio_before_rms"], entry["tgt_sr"],
                  entry["params"]["rms_mix_rate"])
    # float32 envelope products: a few ULPs of the output (|x| ≤ 1)
    np.testing.assert_allclose(out, z["audio_after_rms"], rtol=0, atol=5e-7)


def test_rms_mix_rate_one_is_identity_and_zero_copies_envelope():
    rng = np.random.default_rng(0)
    src = rng.standard_normal(16000 * 3) * np.linspace(0.01, 1, 16000 * 3)
    out = rng.standard_normal(48000 * 3).astype(np.float32) * 0.3
    np.testing.assert_allclose(mix_rms(src, 16000, out, 48000, 1.0), out, rtol=1e-6)
    mixed = mix_rms(src, 16000, out, 48000, 0.0)
    assert np.sqrt(np.mean(mixed[-48000:] ** 2)) > 3 * np.sqrt(np.mean(mixed[:48000] ** 2))


def test_linear_resize_matches_half_pixel_definition():
    x = np.array([0.0, 1.0, 4.0])
    np.testing.assert_allclose(linear_resize(x, 6), [0, 0.25, 0.75, 1.75, 3.25, 4])


@pytest.mark.parametrize("name", ["e2e_v2_48k_f0_rmvpe", "e2e_v1_40k_nof0"])
def test_retrieval_matches_reference(name):
    z, entry = _case(name)
    index = load_index(FIXTURES / CASES[name], dim=z["chunk0_hubert_feats"].shape[-1])
    np.testing.assert_array_equal(index.vectors, z["index_vectors"])
    feats = z["chunk0_hubert_feats"][0]
    score, ix = index.search(feats)
    np.testing.assert_array_equal(ix, z["chunk0_index_ix"])
    np.testing.assert_allclose(score, z["chunk0_index_score"], rtol=1e-5)
    blended = blend(feats, index, entry["params"]["index_rate"])
    # weighted sums of 8 float32 vectors: a few ULPs of values ~O(1)
    np.testing.assert_allclose(blended, z["chunk0_feats_after_index"][0], rtol=0, atol=2e-6)


def test_retrieval_errors(tmp_path):
    with pytest.raises(RetrievalIndexError, match="768-d"):
        load_index(FIXTURES / CASES["e2e_v1_40k_nof0"], dim=768)
    bad = tmp_path / "x.index"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(RetrievalIndexError, match="not a readable faiss index"):
        load_index(bad)
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "missing.index")


def test_exact_match_takes_the_stored_vector():
    index = load_index(FIXTURES / CASES["e2e_v1_40k_nof0"])
    feats = index.vectors[[3, 17]].copy()
    out = blend(feats, index, 1.0)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, feats, atol=1e-6)


@pytest.mark.parametrize("n,pad", [(19, 16000), (1600, 16000), (16001, 16000), (300_001, 16000)])
def test_blocked_highpass_reproduces_filtfilt_and_reflect_padding(n, pad, monkeypatch):
    import mlx_rvc.dsp.filters as filters

    monkeypatch.setattr(filters, "FILTER_BLOCK", 65536)  # several blocks, state carried across them
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    expected = np.pad(highpass(x), (pad, pad), mode="reflect").astype(np.float32)
    np.testing.assert_array_equal(filters.highpass_padded(x, pad), expected)  # exact: same operations


def test_decoding_straight_to_16k_equals_decode_then_resample(tmp_path, monkeypatch):
    import shutil
    import subprocess

    import soundfile as sf

    import mlx_rvc.audio as audio

    monkeypatch.setattr(audio, "DECODE_BLOCK", 10_000)
    x = np.random.default_rng(0).standard_normal((3 * 44100 + 17, 2)).astype(np.float32) * 0.1
    files = [tmp_path / "stereo.wav", tmp_path / "mono16k.flac"]
    sf.write(files[0], x, 44100, subtype="FLOAT")
    sf.write(files[1], x[:, 0], 16000)
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(files[0]), str(tmp_path / "s.m4a")], check=True)
        files.append(tmp_path / "s.m4a")
    for f in files:
        whole, sr = audio.load_audio(f)
        streamed, seconds = audio.load_audio_16k(f)
        np.testing.assert_array_equal(streamed, audio.resample(whole, orig_sr=sr, target_sr=16000))
        assert seconds == len(whole) / sr
    with pytest.raises(audio.AudioFileError, match="more than this tool converts"):
        audio.load_audio_16k(files[0], max_seconds=2.0)
