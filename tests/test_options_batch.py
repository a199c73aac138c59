"""Conversion options validation, input discovery, output naming, audio decoding errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mlx_rvc.audio import AudioFileError, load_audio, resample, write_audio
from mlx_rvc.batch import find_inputs, output_path, subtype_for
from mlx_rvc.dsp.chunks import ChunkConfig
from mlx_rvc.options import ConversionOptions
from mlx_rvc.pipeline import AudioInputError, output_peak_guard, prepare_input, protect_unvoiced


def test_defaults_are_the_reference_webui_defaults():
    o = ConversionOptions()
    assert (o.pitch, o.f0_method, o.index_rate, o.protect, o.rms_mix_rate) == (0, "rmvpe", 0.75, 0.33, 0.25)
    assert o.chunking == ChunkConfig(1, 6, 38, 41)


@pytest.mark.parametrize("field,value", [
    ("pitch", 25), ("pitch", 1.5), ("index_rate", 1.2), ("protect", 0.6), ("rms_mix_rate", -0.1),
    ("filter_radius", 9), ("unvoiced", "zero"), ("resample_sr", 100), ("speaker", -1),
    ("output_format", "aiff"), ("bit_depth", 8),
])
def test_out_of_range_options_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        ConversionOptions(**{field: value})


def test_options_are_frozen_and_copyable():
    o = ConversionOptions()
    with pytest.raises(AttributeError):
        o.pitch = 3  # type: ignore[misc]
    assert o.with_(pitch=3).pitch == 3
    with pytest.raises(ValueError):
        o.with_(protect=2)
    assert ConversionOptions(output_format="flac", bit_depth=24).as_dict()["bit_depth"] == 24
    with pytest.raises(ValueError, match="flac"):
        ConversionOptions(output_format="flac", bit_depth=32)
    assert subtype_for(ConversionOptions(output_format="wav", bit_depth=32)) == "FLOAT"


def test_find_inputs_recurses_and_keeps_order(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/x.wav", "a/b/y.flac", "a/notes.txt", "a/.hidden.wav"]:
        (tmp_path / name).write_bytes(b"0")
    found = find_inputs([tmp_path / "a"])
    assert [p.name for p in found] == ["y.flac", "x.wav"]
    with pytest.raises(FileNotFoundError):
        find_inputs([tmp_path / "missing.wav"])


def test_output_naming():
    inp = Path("songs/live/take.wav")
    assert output_path(inp, voice_name="alice", out=None, fmt="wav", single=True) == Path("converted/take.alice.wav")
    assert output_path(inp, voice_name="alice", out=Path("x.flac"), fmt="flac", single=True) == Path("x.flac")
    assert output_path(inp, voice_name="alice", out=Path("o"), fmt="mp3", single=False,
                       root=Path("songs")) == Path("o/live/take.alice.mp3")


def _write(path, audio, sr, subtype="PCM_16"):
    sf.write(path, audio, sr, subtype=subtype)
    return path


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_formats_round_trip(tmp_path, fmt):
    sr = 44100
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr).astype(np.float32)
    opts = ConversionOptions(output_format=fmt, bit_depth=24 if fmt in ("wav", "flac") else 16)
    path = write_audio(tmp_path / f"t.{fmt}", tone, sr, subtype=subtype_for(opts))
    audio, got_sr = load_audio(path)
    assert got_sr == sr
    assert abs(len(audio) - sr) < 0.1 * sr  # lossy codecs pad a little
    assert 0.3 < np.sqrt(np.mean(audio**2)) < 0.4


def test_stereo_is_downmixed_and_m4a_decodes_with_ffmpeg(tmp_path):
    import shutil
    import subprocess

    sr = 22050
    t = np.arange(sr) / sr
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.zeros_like(t)], axis=1).astype(np.float32) * 0.8
    wav = _write(tmp_path / "s.wav", stereo, sr)
    audio, got = load_audio(wav)
    assert audio.ndim == 1 and got == sr
    assert abs(np.abs(audio).max() - 0.4) < 0.01
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    m4a = tmp_path / "s.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), str(m4a)], check=True)
    audio, got = load_audio(m4a)
    assert got == sr and audio.ndim == 1 and len(audio) > 0.9 * sr


def test_bad_files_give_one_line_errors(tmp_path):
    empty = tmp_path / "e.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp3"
    text.write_text("hello, this is not audio\n" * 20)
    for path, match in [(empty, "empty"), (text, "not")]:
        with pytest.raises(AudioFileError, match=match) as exc:
            load_audio(path)
        assert "\n" not in str(exc.value)
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioFileError, match="not a file"):
        load_audio(tmp_path)


@pytest.mark.parametrize("audio,sr,match", [
    (np.zeros(0, np.float32), 16000, "empty"),
    (np.array([0.1, np.nan] * 8000, np.float32), 16000, "NaN"),
    (np.zeros(1, np.float32), 16000, "ms long"),
    (np.zeros(16000, np.float32), 0, "sample rate"),
    (np.zeros((100, 2, 2), np.float32), 16000, "shape"),
])
def test_bad_audio_is_refused_before_conversion(audio, sr, match):
    with pytest.raises(AudioInputError, match=match):
        prepare_input(audio, sr)


@pytest.mark.parametrize("sr", [8000, 44100, 192000])
def test_any_rate_and_channel_count_become_16k_mono(sr):
    t = np.arange(sr) / sr
    six = np.stack([np.sin(2 * np.pi * 300 * t)] * 6, axis=1).astype(np.float32) * 2.0  # loud: peak 2
    x = prepare_input(six, sr)
    assert x.dtype == np.float32 and abs(len(x) - 16000) <= 1
    assert np.abs(x).max() <= 0.95 + 1e-6  # the reference's input peak guard


def test_resample_keeps_a_tone():
    tone = np.sin(2 * np.pi * 1000 * np.arange(48000) / 48000).astype(np.float32)
    y = resample(tone, orig_sr=48000, target_sr=16000)
    spec = np.abs(np.fft.rfft(y[1000:15000]))
    assert abs(np.argmax(spec) / len(y[1000:15000]) * 16000 - 1000) < 5


def test_peak_guard_and_protect():
    loud = np.array([0.0, 1.5, -2.0], np.float32)
    audio, pcm = output_peak_guard(loud)
    assert np.isclose(np.abs(audio).max(), 0.99)
    assert pcm.dtype == np.int16 and abs(int(pcm[2])) <= 32767
    quiet = np.array([0.5, -0.25], np.float32)
    audio, pcm = output_peak_guard(quiet)
    np.testing.assert_array_equal(audio, quiet)
    np.testing.assert_array_equal(pcm, [16384, -8192])
    feats = np.ones((3, 2), np.float32)
    original = np.zeros((3, 2), np.float32)
    out = protect_unvoiced(feats, original, np.array([200.0, 0.0, 0.5], np.float32), 0.33)
    np.testing.assert_allclose(out[:, 0], [1.0, 0.33, 0.33])
