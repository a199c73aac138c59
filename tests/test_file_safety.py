"""Nothing lost, nothing crashes: hostile names and paths, --out on existing files and folders,
inputs as outputs, --overwrite, permissions, signals and stale temporaries, the batch summary and
its exit codes, up-front option checks, damaged library entries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mlx_rvc import safety
from mlx_rvc.cli import app
from mlx_rvc.importer import import_model

from .conftest import MODELS

runner = CliRunner()
VOICE = MODELS / "weights" / "v1_40k_nof0.pth"  # no f0: converts without a pitch model, fast


def tone(seconds: float = 1.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 180 * t) * np.minimum(1, np.minimum(t, seconds - t) * 10)).astype(np.float32)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to prove nothing was touched)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(safety.TEMP_PREFIX)]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A library with the v1 encoder and the no-f0 voice 'bob'."""
    home = tmp_path_factory.mktemp("safety-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLX_RVC_HOME", str(home))
    import_model(MODELS / "hubert_base.pt", name="hubert_v1")
    import_model(VOICE, name="bob")
    yield home
    mp.undo()


@pytest.fixture
def clips(tmp_path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "x.wav", tone(), 16000)
    sf.write(d / "x.flac", tone(0.8), 16000)
    sf.write(d / "y.wav", tone(0.6, 22050), 22050)
    return d


# -- names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [".", "..", "", "  ", "a/b", "../escape", "/abs", "a\\b", ".hidden", "a\x00b",
                                  "new\nline", "tab\there", "x" * 200, " padded"])
def test_hostile_names_are_refused_with_the_reason(name):
    with pytest.raises(safety.InvalidNameError) as err:
        safety.check_name(name)
    assert "\n" not in str(err.value).replace(repr(name), "")


@pytest.mark.parametrize("name", ["alice", "my_voice-v2", "Ünïcode voice", "v1.40k"])
def test_plain_names_pass(name):
    assert safety.check_name(name) == name


@pytest.mark.parametrize("name", [".", "..", "../../outside", "/tmp/abs", "sub/dir", ".hidden"])
def test_import_refuses_hostile_library_names_and_touches_nothing(home, tmp_path, name):
    before = snapshot(home)
    result = runner.invoke(app, ["import", str(VOICE), "--name", name])
    assert result.exit_code == 2
    assert result.output.startswith("error:") and len(result.output.strip().splitlines()) == 1, result.output
    assert snapshot(home) == before


def test_remove_refuses_hostile_names_and_removes_only_a_link(home, tmp_path):
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "config.json").write_text("{}")
    for name in (".", "..", "../voices", str(keep)):
        result = runner.invoke(app, ["remove", name])
        assert result.exit_code == 2, result.output
    link = home / "voices" / "link"
    link.symlink_to(keep, target_is_directory=True)
    assert runner.invoke(app, ["remove", "link"]).exit_code == 0
    assert not link.exists() and (keep / "config.json").is_file()
    assert (home / "voices" / "bob" / "config.json").is_file()


# -- --out on existing folders and files ----------------------------------------------------------

def test_import_out_never_replaces_a_users_folder_or_file(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    file = tmp_path / "file.txt"
    file.write_text("keep me too")
    for target in (folder, file):
        for extra in ([], ["--overwrite"]):
            result = runner.invoke(app, ["import", str(VOICE), "--out", str(target), *extra])
            assert result.exit_code == 2 and "left alone" in result.output, result.output
    assert (folder / "notes.txt").read_text() == "keep me" and file.read_text() == "keep me too"
    assert not temporaries(tmp_path)


def test_import_over_a_model_needs_overwrite(tmp_path):
    target = tmp_path / "voice"
    assert runner.invoke(app, ["import", str(VOICE), "--out", str(target)]).exit_code == 0
    other = MODELS / "weights" / "v1_32k_nof0.pth"
    refused = runner.invoke(app, ["import", str(other), "--out", str(target)])
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert json.loads((target / "config.json").read_text())["source_name"] == VOICE.name
    assert runner.invoke(app, ["import", str(other), "--out", str(target), "--overwrite"]).exit_code == 0
    assert json.loads((target / "config.json").read_text())["source_name"] == other.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voice"]  # the old copy is gone, no temporaries


def test_import_out_is_never_the_source(tmp_path):
    hf = tmp_path / "hf"
    import shutil

    shutil.copytree(MODELS / "hubert_base_768", hf)
    before = snapshot(hf)
    result = runner.invoke(app, ["import", str(hf), "--out", str(hf), "--overwrite"])
    assert result.exit_code == 2
    assert snapshot(hf) == before


# -- convert: inputs as outputs, existing outputs, collisions, permissions ------------------------

def test_convert_never_writes_over_an_input(home, clips):
    before = snapshot(clips)
    result = runner.invoke(app, ["convert", str(clips / "x.wav"), "-m", "bob", "-o", str(clips / "x.wav"),
                                 "--overwrite"])
    assert result.exit_code == 1 and "is the input" in result.output, result.output
    assert snapshot(clips) == before


def test_convert_out_on_a_file_with_several_inputs_is_refused_up_front(home, clips, tmp_path):
    target = tmp_path / "existing.wav"
    target.write_bytes(b"mine")
    result = runner.invoke(app, ["convert", str(clips), "-m", "bob", "-o", str(target)])
    assert result.exit_code == 2 and "--out" in result.output
    assert target.read_bytes() == b"mine"


def test_batch_summary_skip_overwrite_collisions_and_permissions(home, clips, tmp_path):
    (clips / "broken.wav").write_text("not audio")
    out = tmp_path / "out"
    result = runner.invoke(app, ["convert", str(clips), "-m", "bob", "-o", str(out), "--json"])
    assert result.exit_code == 1, result.output  # one file failed, the others were converted
    report = json.loads(result.output)
    assert (report["converted"], report["skipped"], report["failed"]) == (3, 0, 1)
    failed = [f for f in report["files"] if f["status"] == "failed"]
    assert failed[0]["input"].endswith("broken.wav") and "broken.wav" in failed[0]["error"]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["x_flac.bob.wav", "x_wav.bob.wav", "y.bob.wav"]  # x.wav and x.flac both kept
    mode = (out / "y.bob.wav").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    stamp = (out / "y.bob.wav").stat().st_mtime_ns
    again = runner.invoke(app, ["convert", str(clips / "y.wav"), "-m", "bob", "-o", str(out)])
    assert again.exit_code == 0 and "skipped" in again.output and "--overwrite" in again.output
    assert (out / "y.bob.wav").stat().st_mtime_ns == stamp
    forced = runner.invoke(app, ["convert", str(clips / "y.wav"), "-m", "bob", "-o", str(out), "--overwrite"])
    assert forced.exit_code == 0 and (out / "y.bob.wav").stat().st_mtime_ns != stamp
    assert not temporaries(tmp_path)


def test_mp3_output_of_a_40k_voice_is_resampled_and_says_so(home, clips, tmp_path):
    result = runner.invoke(app, ["convert", str(clips / "x.wav"), "-m", "bob", "-o", str(tmp_path / "o"),
                                 "--format", "mp3", "--json"])
    assert result.exit_code == 0, result.output
    entry = json.loads(result.output)["files"][0]
    assert "44100" in entry["note"]
    assert sf.info(entry["output"]).samplerate == 44100


def test_json_summary_is_printed_when_nothing_can_start(home, clips):
    result = runner.invoke(app, ["convert", str(clips), "-m", "nobody", "--json"])
    assert result.exit_code == 2
    report = json.loads(result.output[result.output.index("{"):])  # stderr (the error line) comes first
    assert "nobody" in report["error"] and report["files"] == []


# -- up-front checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("args,option", [
    (["--f0-method", "yin"], "--f0-method"), (["--seed", "-5"], "--seed"), (["--pitch", "40"], "--pitch"),
    (["--index-rate", "2"], "--index-rate"), (["--speaker", "5000"], "--speaker"), (["--format", "aiff"], "--format"),
    (["--encoder", "missing"], "--encoder"), (["--index", "/nonexistent.index"], "--index"),
])
def test_bad_options_are_refused_up_front_naming_the_option(home, clips, tmp_path, args, option):
    out = tmp_path / "o"
    result = runner.invoke(app, ["convert", str(clips / "x.wav"), "-m", "bob", "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:") and option in result.output
    assert not out.exists()


def test_f0_file_with_negative_times_is_refused(home, clips, tmp_path):
    curve = tmp_path / "curve.csv"
    curve.write_text("seconds,hz\n-0.5,200\n0.5,210\n")
    result = runner.invoke(app, ["convert", str(clips / "x.wav"), "-m", "bob", "--f0-file", str(curve)])
    assert result.exit_code == 2 and "negative time" in result.output and "--f0-file" in result.output


def test_pitch_options_for_a_no_f0_voice_warn(home, clips, tmp_path):
    result = runner.invoke(app, ["convert", str(clips / "x.wav"), "-m", "bob", "-o", str(tmp_path / "o"),
                                 "--f0-method", "pm", "--json"])
    assert result.exit_code == 0
    report = json.loads(result.output[result.output.index("{"):])
    assert any("--f0-method" in w for w in report["warnings"])


def test_missing_encoder_for_the_voice_version_is_named(tmp_path, monkeypatch, clips):
    monkeypatch.setenv("MLX_RVC_HOME", str(tmp_path / "lib"))
    import_model(VOICE, name="bob")
    result = runner.invoke(app, ["convert", str(clips / "x.wav"), "-m", "bob"])
    assert result.exit_code == 2 and "content encoder" in result.output


def test_f0_and_compare_never_write_over_their_inputs(clips, tmp_path):
    before = snapshot(clips)
    for args in (["f0", str(clips / "x.wav"), "--method", "pm", "--out", str(clips / "x.wav")],
                 ["f0", str(clips / "x.wav"), "--method", "pm", "--plot", str(clips / "x.wav"), "--overwrite"],
                 ["compare", str(clips / "x.wav"), str(clips / "y.wav"), "--png", str(clips / "y.wav"), "--overwrite"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "is the input" in result.output, (args, result.output)
    assert snapshot(clips) == before
    assert runner.invoke(app, ["f0", str(clips / "x.wav"), "--pitch", "1000"]).exit_code == 2
    csv = tmp_path / "f0.csv"
    csv.write_text("mine")
    kept = runner.invoke(app, ["f0", str(clips / "x.wav"), "--method", "pm", "--out", str(csv)])
    assert kept.exit_code == 2 and "--overwrite" in kept.output and csv.read_text() == "mine"
    assert runner.invoke(app, ["f0", str(clips / "x.wav"), "--method", "pm", "--out", str(csv),
                               "--overwrite"]).exit_code == 0
    assert csv.read_text().startswith("seconds,hz")


# -- damaged library entries ----------------------------------------------------------------------

def test_damaged_entries_are_listed_and_refused(tmp_path, monkeypatch, clips):
    monkeypatch.setenv("MLX_RVC_HOME", str(tmp_path / "lib"))
    import_model(MODELS / "hubert_base.pt", name="hubert_v1")
    good = import_model(VOICE, name="good").path
    for name, damage in (("nojson", lambda d: (d / "config.json").unlink()),
                         ("badjson", lambda d: (d / "config.json").write_text("{oops")),
                         ("cut", lambda d: (d / "model.safetensors").write_bytes(
                             (d / "model.safetensors").read_bytes()[:5000]))):
        d = tmp_path / "lib" / "voices" / name
        import shutil

        shutil.copytree(good, d)
        damage(d)
    listing = runner.invoke(app, ["list", "--json"])
    assert listing.exit_code == 0
    damaged = {m["name"]: m["damaged"] for m in json.loads(listing.output)}
    assert damaged["good"] is None and all(damaged[n] for n in ("nojson", "badjson", "cut"))
    assert "truncated" in damaged["cut"]
    assert runner.invoke(app, ["list"]).exit_code == 0
    for name in ("nojson", "badjson", "cut"):
        result = runner.invoke(app, ["convert", str(clips / "x.wav"), "-m", name])
        assert result.exit_code == 2 and "damaged" in result.output, result.output


# -- signals and stale temporaries -------------------------------------------------------------------

HOLD = textwrap.dedent("""
    import sys, time
    from mlx_rvc import safety
    safety.install_signal_handlers()
    try:
        with safety.atomic_file(sys.argv[1]) as tmp:
            tmp.write_bytes(b"partial")
            print("ready", flush=True)
            time.sleep(60)
    except safety.Terminated as exc:
        sys.exit(128 + exc.signum)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_remove_temporaries(tmp_path, sig):
    if signal.getsignal(sig) == signal.SIG_IGN:  # e.g. under nohup: the child inherits it and rightly keeps it
        pytest.skip(f"{signal.Signals(sig).name} is ignored in this environment")
    target = tmp_path / "out.wav"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert len(temporaries(tmp_path)) == 1
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert not target.exists() and not temporaries(tmp_path)


def test_stale_temporaries_of_dead_processes_are_cleaned(home, clips, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f"{safety.TEMP_PREFIX}{dead.pid}.abc.wav"
    stale.write_bytes(b"left by a killed run")
    live = out / f"{safety.TEMP_PREFIX}{os.getpid()}.abc.wav"
    live.write_bytes(b"still being written")
    result = runner.invoke(app, ["convert", str(clips / "y.wav"), "-m", "bob", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert not stale.exists() and live.exists()


def test_sigterm_during_a_conversion_leaves_no_temporary(home, tmp_path):
    """A real conversion in a subprocess, terminated while it writes: nothing half-written stays."""
    src = tmp_path / "long.wav"
    sf.write(src, np.tile(tone(1.0), 40), 16000)
    out = tmp_path / "o"
    env = {**os.environ, "MLX_RVC_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "mlx_rvc", "convert", str(src), "-m", "bob", "-o", str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(out.iterdir()):  # the output folder has something in it: the write began
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    leftovers = temporaries(tmp_path)
    assert not leftovers, leftovers
    if proc.returncode == 128 + signal.SIGTERM:
        assert not (out / "long.bob.wav").exists()
    else:  # it finished before the signal: then the output is complete
        assert proc.returncode == 0 and sf.info(out / "long.bob.wav").frames > 0


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "demo_converted.wav").write_bytes(b"a user's file")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "did not make" in result.output
    assert (tmp_path / "demo_converted.wav").read_bytes() == b"a user's file"


def test_a_folder_search_skips_the_output_folder_inside_it(home, clips):
    out = clips / "converted"
    first = runner.invoke(app, ["convert", str(clips / "y.wav"), "-m", "bob", "-o", str(out)])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["convert", str(clips), "-m", "bob", "-o", str(out), "--json"])
    report = json.loads(second.output[second.output.index("{"):])
    assert not any("/converted/" in f["input"] for f in report["files"])
    assert report["skipped"] == 1 and report["converted"] == 2  # y.wav's output was already there
