"""The web app's engine under hostile use, without a browser: encoders that do not fit, library
changes while it runs, Hugging Face folders and .safetensors uploads, index width at import,
library management, errors that name the field, formats that cannot hold the voice's rate,
progress that keeps moving, and a picture that costs little."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from mlx_rvc.errors import ModelConfigError
from mlx_rvc.importer import import_model
from mlx_rvc.options import ConversionOptions
from mlx_rvc.retrieval import RetrievalIndexError
from mlx_rvc.safety import InvalidNameError
from mlx_rvc.webui.engine import Engine, PageError, _Ticker

from .conftest import FIXTURES, MODELS

INDEX_V2 = FIXTURES / "added_IVF10_Flat_nprobe_1_oracle_e2e_v2_48k_f0_rmvpe_v2.index"
BOB = MODELS / "weights" / "v1_40k_nof0.pth"  # v1, no f0: needs a 256-d encoder, no pitch model


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_RVC_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def clip(tmp_path):
    t = np.arange(16000) / 16000
    path = tmp_path / "clip.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000)
    return path


def test_an_encoder_that_does_not_fit_is_a_clear_error_not_a_faiss_assertion(home, tmp_path, clip):
    import_model(MODELS / "hubert_base_768", name="hubert_768")  # v2 features only
    import_model(BOB, name="bob")
    engine = Engine(tmp_path / "work")
    with pytest.raises(PageError, match="content encoder") as err:
        engine.convert(clip, "bob", ConversionOptions())
    assert "mlx-rvc" not in str(err.value) and str(home) not in str(err.value)  # the page's own words
    with pytest.raises(PageError, match="does not make"):
        engine.convert(clip, "bob", ConversionOptions(), encoder="hubert_768")


def test_library_changes_are_noticed_without_a_restart(home, tmp_path, clip):
    import_model(MODELS / "hubert_base_768", name="hubert_768")
    import_model(BOB, name="bob")
    engine = Engine(tmp_path / "work")
    with pytest.raises(PageError):
        engine.convert(clip, "bob", ConversionOptions())
    import_model(MODELS / "hubert_base.pt", name="hubert_v1")  # added outside the page
    job = engine.convert(clip, "bob", ConversionOptions())
    assert job.output.is_file()
    assert any("hubert" in line or "encoder" in line for line in job.log)
    shutil.rmtree(home / "encoders" / "hubert_v1")  # removed outside the page: chosen again, not stale
    with pytest.raises(PageError, match="content encoder"):
        engine.convert(clip, "bob", ConversionOptions())


def test_hugging_face_folder_files_and_safetensors_import(home, tmp_path):
    engine = Engine(tmp_path / "work")
    folder = MODELS / "hubert_base_768"
    files = [folder / "config.json", folder / "model.safetensors"]
    result = engine.import_upload(files)
    assert result.model_type == "hubert" and result.path.name == "hubert"
    with pytest.raises(ModelConfigError, match="config.json"):  # a lone HF weights file: say what is missing
        engine.import_upload(MODELS / "hubert_base_safetensors" / "model.safetensors", name="lone")
    st = [MODELS / "hubert_base_safetensors" / n for n in ("config.json", "model.safetensors")]
    assert engine.import_upload(st, name="st").model_type == "hubert"
    with pytest.raises(ValueError, match="config.json"):
        engine.import_upload([folder / "config.json", folder / "preprocessor_config.json"])
    assert not list((tmp_path / "work").glob("hf-*"))  # the assembled folder is gone


def test_an_index_of_the_wrong_width_is_refused_at_import(home):
    with pytest.raises(RetrievalIndexError, match="256-d"):
        import_model(BOB, name="bob", index=INDEX_V2)  # a v2 (768-d) index with a v1 voice
    assert not (home / "voices" / "bob").exists()


def test_delete_and_rename_refuse_hostile_names(home, tmp_path):
    import_model(BOB, name="bob")
    engine = Engine(tmp_path / "work")
    for bad in ("..", "../voices", "a/b", ".hidden", ""):
        with pytest.raises((InvalidNameError, LookupError)):
            engine.delete_model(bad, "rvc_voice")
        with pytest.raises((InvalidNameError, LookupError)):
            engine.rename_model("bob", bad, "rvc_voice")
    assert engine.rename_model("bob", "robert", "rvc_voice").name == "robert"
    assert engine.voice_names() == ["robert"]
    engine.delete_model("robert", "rvc_voice")
    assert engine.voice_names() == [] and (home / "voices").is_dir()


def test_mp3_of_a_40k_voice_is_resampled_in_the_page(home, tmp_path, clip):
    import_model(MODELS / "hubert_base.pt", name="hubert_v1")
    import_model(BOB, name="bob")
    job = Engine(tmp_path / "work").convert(clip, "bob", ConversionOptions(output_format="mp3"))
    assert sf.info(job.output).samplerate == 44100
    assert any("44100" in line for line in job.log)


def test_range_errors_name_the_field():
    pytest.importorskip("gradio", reason="the web app needs the ui extra (gradio)")
    from mlx_rvc.webui.app import CHUNK_FIELDS, options_from

    d = ConversionOptions()
    values = {f: getattr(d, f) for f in ConversionOptions.field_names() if f != "chunking"}
    values.update({k: getattr(d.chunking, k) for k in CHUNK_FIELDS})
    for field, bad, label in (("protect", 0.9, "Protect"), ("index_rate", 3, "Index rate"),
                              ("pitch", 1.5, "Pitch (semitones)"), ("speaker", -2, "Speaker id")):
        with pytest.raises(ValueError, match=label.replace("(", r"\(").replace(")", r"\)")):
            options_from({**values, field: bad})


def test_progress_moves_while_a_stage_reports_nothing():
    seen = []
    with _Ticker(lambda fraction, what: seen.append((fraction, what))) as report:
        report(0.1, "pitch")
        time.sleep(1.7)  # a silent stage: the ticker speaks for it
    ticks = [f for f, w in seen if w.startswith("pitch (")]
    assert len(ticks) >= 2 and ticks == sorted(ticks) and 0.1 < ticks[-1] < 0.2


def test_the_comparison_picture_is_cheap(tmp_path):
    """Drawing 60 s against 60 s stays a fraction of a second of CPU per second of audio."""
    from mlx_rvc.plots import comparison_figure, save_figure

    sr = 48000
    x = (0.3 * np.sin(2 * np.pi * 200 * np.arange(60 * sr) / sr)).astype(np.float32)
    t0 = time.process_time()
    save_figure(comparison_figure([("a", x, sr), ("b", x, sr)], f0=[np.full(6000, 200.0), None]),
                tmp_path / "c.png", dpi=80)
    cpu = time.process_time() - t0
    assert cpu < 15, cpu  # ~1.5 s on the 2-core CI machine; the old full-resolution drawing took ~10x
