"""The web app: its engine without a browser, then the real page in headless Chromium.

The browser tests drive Debian's Chromium (``/usr/bin/chromium``, never a downloaded browser)
through Playwright, against the app served in this process on a free loopback port. Each state
is saved as a screenshot in ``$MLX_RVC_UI_SCREENSHOTS`` (default: a pytest temporary directory,
printed at the end of the module). They skip with the reason when Gradio, Playwright or
Chromium is missing; CI installs all three (scripts/setup.sh).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mlx_rvc.importer import import_model
from mlx_rvc.options import ConversionOptions
from mlx_rvc.webui.engine import Engine, FifoLock

from .conftest import FIXTURES, MODELS

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
INDEX_V2 = FIXTURES / "added_IVF10_Flat_nprobe_1_oracle_e2e_v2_48k_f0_rmvpe_v2.index"
CHROMIUM = os.environ.get("MLX_RVC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 60_000  # generous: CI shares two cores


def tone(seconds: float = 1.5, sr: int = 44100) -> np.ndarray:
    """A voiced test signal: three harmonics on a 180 ± 40 Hz vibrato, faded in and out."""
    t = np.arange(int(sr * seconds)) / sr
    phase = 2 * np.pi * np.cumsum(180 + 40 * np.sin(2 * np.pi * 1.5 * t)) / sr
    fade = np.minimum(1, np.minimum(t, seconds - t) * 10)
    return (0.3 * (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)) * fade).astype(np.float32)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A model library with both tiny encoders, RMVPE and the voices 'alice' (v2 48k, f0, index) and 'bob'."""
    home = tmp_path_factory.mktemp("ui-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLX_RVC_HOME", str(home))
    import_model(MODELS / "hubert_base_768", name="hubert_base")
    import_model(MODELS / "hubert_base.pt", name="hubert_v1")
    import_model(MODELS / "rmvpe.pt", name="rmvpe")
    import_model(MODELS / "weights" / "v2_48k_f0.pth", name="alice", index=INDEX_V2)
    import_model(MODELS / "weights" / "v1_40k_nof0.pth", name="bob")  # no f0, no index
    yield home
    mp.undo()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ui-media")
    sf.write(d / "speech.wav", tone(), 44100, subtype="PCM_16")
    sf.write(d / "speech.ogg", tone(1.2, 48000), 48000)
    (d / "broken.wav").write_text("this is not audio at all")
    (d / "broken.pth").write_bytes(b"PK\x03\x04 not really a checkpoint")
    return {p.stem + p.suffix.replace(".", "_"): p for p in d.iterdir()}


# -- the engine, without a browser -------------------------------------------------------------

def test_switching_voices_reuses_loaded_models(library, media, tmp_path):
    engine = Engine(tmp_path / "work")
    opts = ConversionOptions(f0_method="pm")
    first = engine.convert(media["speech_wav"], "alice", opts)
    assert engine.loads == 1 and any("loaded voice alice" in line for line in first.log)
    engine.convert(media["speech_wav"], "bob", opts)
    again = engine.convert(media["speech_wav"], "alice", opts)
    assert engine.loads == 2, "switching back to a loaded voice must not load it again"
    assert not any(line.startswith("loaded") for line in again.log)
    assert engine.is_loaded("alice") and engine.is_loaded("bob")
    assert "yes" in engine.voice_details("alice")["in memory"]
    # the same input, options and seed give the same audio, wherever the voice came from
    np.testing.assert_array_equal(first.result.audio, again.result.audio)
    # options that cannot act on a voice are said, not silently ignored
    bob = engine.convert(media["speech_wav"], "bob", opts.with_(pitch=3))
    assert any("no pitch input" in line for line in bob.log)
    assert any("no retrieval index" in line for line in bob.log)


def test_voice_cache_is_bounded(library, media, tmp_path):
    engine = Engine(tmp_path / "work", max_voices=1)
    opts = ConversionOptions(f0_method="pm")
    engine.convert(media["speech_wav"], "alice", opts)
    job = engine.convert(media["speech_wav"], "bob", opts)
    assert any("unloaded voice alice" in line for line in job.log)
    assert engine.is_loaded("bob") and not engine.is_loaded("alice")


def test_output_format_depth_and_rate_are_applied(library, media, tmp_path):
    engine = Engine(tmp_path / "work")
    job = engine.convert(media["speech_ogg"], "alice",
                         ConversionOptions(f0_method="pm", output_format="flac", bit_depth=24, resample_sr=22050))
    info = sf.info(str(job.output))
    assert (job.output.suffix, info.format, info.subtype, info.samplerate) == (".flac", "FLAC", "PCM_24", 22050)
    assert sf.info(str(job.original)).subtype == "PCM_16" and job.picture.stat().st_size > 10_000
    assert any("flac, 24-bit, 22050 Hz" in line for line in job.log)


def test_conversions_from_many_threads_run_one_at_a_time(library, media, tmp_path, monkeypatch):
    from mlx_rvc.webui import engine as engine_mod

    engine = Engine(tmp_path / "work")
    active, peak, lock = [0], [0], threading.Lock()
    original = engine_mod.VoiceConverter.convert

    def tracking(self, *args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.05)  # widen the window in which an overlap would show
            return original(self, *args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(engine_mod.VoiceConverter, "convert", tracking)
    opts = ConversionOptions(f0_method="pm", seed=7)
    results, queued, errors = [None] * 3, [], []

    def job(i):
        try:
            results[i] = engine.convert(media["speech_wav"], "alice", opts,
                                        report=lambda f, what: queued.append(what) if what.startswith("queued") else None)
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and all(r is not None for r in results)
    assert peak[0] == 1, "two conversions ran at the same time"
    for r in results[1:]:
        np.testing.assert_array_equal(r.result.audio, results[0].result.audio)
    assert queued, "a waiting conversion reports its place in the queue"
    assert engine.status().startswith("Converter idle")


def test_fifo_lock_serves_in_arrival_order():
    lock, order = FifoLock(), []

    def job(i):
        with lock.hold():
            order.append(i)

    threads = []
    with lock.hold():
        for i in range(3):
            threads.append(threading.Thread(target=job, args=(i,)))
            threads[-1].start()
            while lock.waiting < i + 1:  # let thread i queue up before the next one starts
                time.sleep(0.01)
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2] and not lock.busy


def test_upload_import_refuses_unsafe_names_and_overwrites(library, tmp_path):
    engine = Engine(tmp_path / "work")
    voice = MODELS / "weights" / "v2_32k_f0.pth"
    for bad in ("../evil", "a/b", ".hidden", "x" * 70):
        with pytest.raises(ValueError, match="invalid name"):
            engine.import_upload(voice, name=bad)
    with pytest.raises(ValueError, match="already exists"):
        engine.import_upload(voice, name="alice")  # a different file under an existing name
    assert engine.import_upload(MODELS / "weights" / "v2_48k_f0.pth", name="alice", index=INDEX_V2).unchanged


def test_every_option_has_a_widget_and_defaults_round_trip():
    pytest.importorskip("gradio", reason="the web app needs the ui extra (gradio)")
    from mlx_rvc.webui.app import CHUNK_FIELDS, options_from

    d = ConversionOptions()
    values = {**d.as_dict(), **{k: getattr(d.chunking, k) for k in CHUNK_FIELDS}}
    assert options_from(values) == d
    with pytest.raises(ValueError, match="whole number"):
        options_from({**values, "seed": 1.5})


# -- the page in Chromium ----------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = Path(os.environ.get("MLX_RVC_UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui-screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    yield d
    print(f"\nweb app screenshots: {d}")


@pytest.fixture(scope="module")
def server(library, tmp_path_factory):
    pytest.importorskip("gradio", reason="the web app needs the ui extra (gradio)")
    from mlx_rvc.webui import launch

    engine = Engine(tmp_path_factory.mktemp("ui-work"))
    port = _free_port()
    blocks = launch(port=port, engine=engine, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", engine
    blocks.close()


@pytest.fixture(scope="module")
def browser(media):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)")
    fake_mic = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={media['speech_wav']}"]
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + fake_mic)
        yield b
        b.close()


class Page:
    """The app's page with the few gestures the tests need, and screenshots of each state."""

    def __init__(self, browser, url: str, shots: Path, prefix: str, ready: str = "#voice-info table") -> None:
        from playwright.sync_api import expect

        self.expect = expect
        self.context = browser.new_context(viewport={"width": 1300, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.goto(url)
        self.page.wait_for_selector(ready)
        self.shots, self.prefix, self.n = shots, prefix, 0

    def shot(self, state: str) -> Path:
        self.n += 1
        path = self.shots / f"{self.prefix}-{self.n}-{state}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def log(self) -> str:
        return self.page.locator("#status-log textarea").input_value()

    def wait_log(self, text: str) -> None:
        self.expect(self.page.locator("#status-log textarea")).to_have_value(
            re.compile(".*" + re.escape(text) + ".*", re.S), timeout=TIMEOUT_MS)

    def choose_voice(self, name: str) -> None:
        self.page.locator("#voice input").click()
        self.page.get_by_role("option", name=name, exact=True).click()
        self.expect(self.page.locator("#voice-info")).to_contain_text(name)

    def upload(self, path: Path) -> None:
        clear = self.page.locator("#input-audio button[aria-label='Clear']")
        if clear.count() and clear.first.is_visible():
            clear.first.click()
        self.page.locator("#input-audio input[type=file]").set_input_files(str(path))

    def convert(self) -> None:
        self.page.locator("#convert-btn").click()

    def wait_result(self, n_done: int = 1) -> str:
        """Wait for the n-th conversion of this page to finish; the converted file's URL."""
        self.expect(self.page.locator("#status-log textarea")).to_have_value(
            re.compile(r"(.*\bwrote\b.*){%d}" % n_done, re.S), timeout=TIMEOUT_MS)
        self.page.wait_for_selector("#converted-audio audio[src]", state="attached")
        self.page.wait_for_selector("#comparison img[src]", state="attached")
        self.page.wait_for_selector("#download a[href]", state="attached")
        self.expect(self.page.locator("#error")).to_be_hidden()
        return self.page.locator("#download a[href]").first.get_attribute("href")

    def fetch(self, url: str) -> bytes:
        response = self.page.request.get(url)
        assert response.ok, url
        return response.body()

    def close(self) -> None:
        self.context.close()


def _assert_no_trace(page: Page) -> None:
    text = page.page.locator("body").inner_text()
    assert "Traceback" not in text and 'File "' not in text


def test_import_upload_convert_download_in_the_chosen_format(server, browser, media, shots):
    url, engine = server
    page = Page(browser, url, shots, "1-upload")
    try:
        page.shot("start")
        page.page.locator("#import-box").get_by_text("Import a model").click()
        page.page.locator("#import-file input[type=file]").set_input_files(str(MODELS / "weights" / "v2_32k_f0.pth"))
        page.page.locator("#import-name input, #import-name textarea").first.fill("carol")
        page.page.locator("#import-btn").click()
        page.wait_log("imported: voice carol")
        page.expect(page.page.locator("#voice input")).to_have_value("carol")
        page.expect(page.page.locator("#voice-info")).to_contain_text("32000 Hz")
        page.shot("voice-imported")

        page.upload(media["speech_ogg"])  # not wav: decoded by the library, played back as wav
        page.expect(page.page.locator("#input-info")).to_contain_text("48000 Hz")
        page.shot("input-uploaded")
        page.page.locator("#advanced").get_by_text("Advanced options").click()
        page.page.locator("#output-format").get_by_text("flac", exact=True).click()
        page.page.locator("#bit-depth").get_by_text("24-bit", exact=True).click()
        page.page.locator("#resample-sr input").click()
        page.page.get_by_role("option", name="44.1 kHz").click()
        page.page.locator("#input-audio").scroll_into_view_if_needed()
        page.shot("options-set")
        page.convert()
        page.shot("converting")
        href = page.wait_result()
        page.shot("converted")

        audio = page.fetch(href)
        info = sf.info(io.BytesIO(audio))
        assert (info.format, info.subtype, info.samplerate) == ("FLAC", "PCM_24", 44100)
        assert abs(info.duration - 1.2) < 0.05
        original = page.page.locator("#original-audio audio[src]").first.get_attribute("src")
        assert original
        png = page.fetch(page.page.locator("#comparison img[src]").first.get_attribute("src"))
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        assert "converted in" in page.log() and "stages (s)" in page.log()
        assert engine.is_loaded("carol")
        _assert_no_trace(page)
    finally:
        page.close()


def test_first_run_imports_everything_through_the_page(server, browser, media, shots, tmp_path, monkeypatch):
    """From an empty library to a converted file, with every model imported by upload."""
    monkeypatch.setenv("MLX_RVC_HOME", str(tmp_path / "empty-home"))  # the engine reads it on each call
    url, _ = server
    page = Page(browser, url, shots, "0-first-run", ready="#voice-info li")
    try:
        page.expect(page.page.locator("#voice-info")).to_contain_text("No content encoder")
        page.shot("empty-library")
        for path, line in ((MODELS / "hubert_base.pt", "imported: content encoder hubert_base"),
                           (MODELS / "rmvpe.pt", "imported: pitch model rmvpe"),
                           (MODELS / "weights" / "v1_40k_f0.pth", "imported: voice v1_40k_f0")):
            page.page.locator("#import-file input[type=file]").set_input_files(str(path))
            page.page.locator("#import-btn").click()
            page.wait_log(line)
        page.expect(page.page.locator("#voice input")).to_have_value("v1_40k_f0")
        page.expect(page.page.locator("#voice-info")).not_to_contain_text("No content encoder")
        page.upload(media["speech_wav"])
        page.convert()
        info = sf.info(io.BytesIO(page.fetch(page.wait_result())))
        assert info.samplerate == 40000
        page.shot("converted")
    finally:
        page.close()


def test_microphone_recording_converts(server, browser, shots):
    url, _ = server
    page = Page(browser, url, shots, "2-microphone")
    try:
        page.choose_voice("alice")
        page.page.locator("#input-audio button[aria-label='Record audio']").click()
        page.page.locator("#input-audio button:has-text('Record'):visible").click()
        page.page.wait_for_timeout(2000)  # the fake device plays the test wav into the recorder
        page.shot("recording")
        page.page.locator("#input-audio button:has-text('Stop'):visible").first.click()
        page.expect(page.page.locator("#input-info")).to_contain_text("Hz")
        seconds = float(page.page.locator("#input-info").inner_text().split(": ")[1].split(" s")[0])
        assert 1.0 < seconds < 6.0
        page.shot("recorded")
        page.convert()
        href = page.wait_result()
        page.shot("converted")
        info = sf.info(io.BytesIO(page.fetch(href)))
        assert info.samplerate == 48000 and info.subtype == "PCM_16"
        _assert_no_trace(page)
    finally:
        page.close()


def test_invalid_uploads_show_errors_and_the_app_keeps_working(server, browser, media, shots):
    url, _ = server
    page = Page(browser, url, shots, "3-errors")
    try:
        page.choose_voice("alice")
        page.upload(media["broken_wav"])
        error = page.page.locator("#error")
        page.expect(error).to_be_visible()
        page.expect(error).to_contain_text("broken.wav")
        page.shot("bad-audio")
        page.convert()  # converting the bad input again: the same one-line error, no trace
        page.wait_log("error: broken.wav")
        _assert_no_trace(page)

        page.page.locator("#import-box").get_by_text("Import a model").click()
        page.page.locator("#import-file input[type=file]").set_input_files(str(media["broken_pth"]))
        page.page.locator("#import-btn").click()
        page.wait_log("error: import:")
        page.expect(error).to_be_visible()
        page.shot("bad-checkpoint")
        _assert_no_trace(page)

        page.upload(media["speech_wav"])
        page.expect(page.page.locator("#input-info")).to_contain_text("44100 Hz")
        page.expect(error).to_be_hidden()
        page.convert()
        page.wait_result()
        page.shot("recovered")
    finally:
        page.close()


def test_two_tabs_convert_at_once(server, browser, media, shots):
    url, _ = server
    tabs = [Page(browser, url, shots, f"4-tab{i}") for i in (1, 2)]
    try:
        for tab in tabs:
            tab.choose_voice("alice")
            tab.upload(media["speech_wav"])
            tab.expect(tab.page.locator("#input-info")).to_contain_text("44100 Hz")
        for tab in tabs:
            tab.convert()
        tabs[1].shot("both-started")
        hrefs = [tab.wait_result() for tab in tabs]
        for tab in tabs:
            tab.shot("done")
        first, second = (sf.read(io.BytesIO(tab.fetch(h)))[0] for tab, h in zip(tabs, hrefs))
        # same input, options and seed: both tabs get the very same audio, whatever the order
        np.testing.assert_array_equal(first, second)
    finally:
        for tab in tabs:
            tab.close()


def test_cli_ui_serves_on_loopback(library):
    pytest.importorskip("gradio", reason="the web app needs the ui extra (gradio)")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlx_rvc", "ui", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    assert r.status == 200 and b"gradio" in r.read().lower()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                    pytest.fail(f"mlx-rvc ui did not serve on port {port}: {out[-2000:]}")
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(30)
