"""What the web app does, without any Gradio: the voice cache, the conversion queue, one job.

The page (:mod:`mlx_rvc.webui.app`) only turns widget values into calls of :class:`Engine`.
The engine owns everything shared between browser tabs:

* loaded models — voices (a small LRU of :class:`~mlx_rvc.pipeline.VoiceConverter`), plus one
  content encoder per voice version and one RMVPE shared by all voices, so switching voices
  never loads anything twice;
* one first-come-first-served lock around every use of those models: MLX arrays and modules are
  not documented as thread-safe, and on a CPU two conversions at once would only compete for
  the same cores, so conversions run one after another and the waiting ones report their
  place in the queue;
* a work directory for the files each job produces (the converted file in the chosen format,
  a browser-playable copy of the input, the comparison picture).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import artifact, store
from ..audio import load_audio, write_audio
from ..batch import subtype_for
from ..errors import MlxRvcError
from ..importer import INDEX_NAME, KINDS, ImportResult, home, import_model
from ..options import ConversionOptions
from ..pipeline import ConversionResult, VoiceConverter

logger = logging.getLogger(__name__)

Report = Callable[[float, str], None]  # (fraction of the whole job, what is happening)

MAX_LOADED_VOICES = 4  # voices kept in memory; the least recently used one is dropped beyond this
JOB_MAX_AGE_S = 3600  # job directories older than this are deleted when a new job starts
KIND_WORDS = {"rvc_voice": "voice", "hubert": "content encoder", "rmvpe": "pitch model", "fcpe": "pitch model",
              "crepe": "pitch model"}
LOSSY_FORMATS = ("ogg", "mp3")
# the share of a job's progress bar each step takes: decode, load models, convert, write + draw
SPAN_LOAD, SPAN_CONVERT, SPAN_FINISH = (0.02, 0.08), (0.08, 0.9), (0.9, 1.0)


class FifoLock:
    """A lock granted in arrival order that tells waiters how many jobs are ahead of them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self.holder: str = ""  # what the job holding the lock is doing, for the status line

    @property
    def waiting(self) -> int:
        with self._cond:
            return max(len(self._queue) - 1, 0)

    @property
    def busy(self) -> bool:
        with self._cond:
            return bool(self._queue)

    @contextmanager
    def hold(self, on_wait: Callable[[int], None] | None = None) -> Iterator[None]:
        """Wait for the turn of this caller; ``on_wait(ahead)`` is called while waiting (outside the lock)."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
        try:
            while True:
                with self._cond:
                    ahead = self._queue.index(ticket)
                    if ahead == 0:
                        break
                    # wake up now and then even without a notify, to refresh the waiter's display
                    self._cond.wait(timeout=0.5)
                    ahead = self._queue.index(ticket)
                    if ahead == 0:
                        break
                if on_wait is not None:
                    on_wait(ahead)
            yield
        finally:
            with self._cond:
                if self._queue and self._queue[0] is ticket:
                    self.holder = ""
                self._queue.remove(ticket)
                self._cond.notify_all()


class _SharedModels:
    """Content encoders (one per voice version) and the RMVPE model, loaded once for all voices."""

    def __init__(self, on_load: Callable[[str, float], None]) -> None:
        self._encoders: dict[str, object] = {}
        self._rmvpe = None
        self._on_load = on_load

    def encoder(self, version: str, ref: str | None = None):
        key = f"{version}:{ref or ''}"
        if key not in self._encoders:
            t0 = time.perf_counter()
            self._encoders[key] = store.load_encoder(ref, version=version)
            self._on_load(f"content encoder {ref or 'for ' + version + ' voices'}", time.perf_counter() - t0)
        return self._encoders[key]

    def rmvpe(self):
        if self._rmvpe is None:
            t0 = time.perf_counter()
            self._rmvpe = store.load_pitch_model()
            self._on_load("RMVPE pitch model", time.perf_counter() - t0)
        return self._rmvpe

    def forget(self) -> None:
        self._encoders.clear()
        self._rmvpe = None


class _Converter(VoiceConverter):
    """A VoiceConverter whose encoder and pitch model come from the engine's shared cache (the
    pipeline asks for them through ``encoder`` and ``rmvpe()``; nothing else is changed)."""

    def __init__(self, voice, shared: _SharedModels) -> None:
        super().__init__(voice)
        self._shared = shared
        self.encoder_choice: str | None = None  # a library encoder's name; None = the first that fits

    @property
    def encoder(self):
        return self._shared.encoder(self.voice.cfg.version, self.encoder_choice)

    def rmvpe(self):
        return self._shared.rmvpe()


@dataclass
class JobOutput:
    """The files and facts of one finished conversion."""

    output: Path  # the converted audio in the chosen format
    original: Path  # the decoded input as 16-bit wav, playable in any browser
    picture: Path  # original vs converted: waveforms, spectrograms, f0
    result: ConversionResult
    input_seconds: float
    input_rate: int
    log: list[str] = field(default_factory=list)  # timings, loads, warnings: one line each


def _summarise_voice(info: store.ModelInfo) -> dict[str, str]:
    c = info.config
    index = info.path / INDEX_NAME
    sha = str(c.get("source_sha256", ""))
    return {
        "version": str(c.get("version", "?")),
        "sample rate": f"{c.get('sample_rate', 0)} Hz",
        "pitch (f0)": "yes" if c.get("f0") else "no: pitch options have no effect",
        "speakers": str(c.get("spk_embed_dim", 1)),
        "index": f"yes ({index.stat().st_size / 2**20:.1f} MiB)" if index.is_file() else "none",
        "precision": str(c.get("dtype", "?")),
        "imported from": f"{c.get('source_name', '?')} (sha256 {sha[:12]}…)" if sha else str(c.get("source_name", "?")),
    }


class Engine:
    """Shared state of the web app: model caches, the conversion queue and the work directory.

    Args:
        workdir: where job files go; default: a fresh temporary directory.
        max_voices: how many voices stay loaded at once.
    """

    def __init__(self, workdir: str | Path | None = None, *, max_voices: int = MAX_LOADED_VOICES) -> None:
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="mlx-rvc-ui-")
            atexit.register(shutil.rmtree, workdir, ignore_errors=True)  # a directory of our own making
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.max_voices = max_voices
        self.lock = FifoLock()
        self._voices: OrderedDict[str, tuple[tuple, _Converter]] = OrderedDict()
        self._voices_lock = threading.Lock()  # the status timer reads the cache while a job changes it
        self._load_events: list[str] = []  # model loads since the last job collected them
        self._shared = _SharedModels(self._loaded)
        self._plot_lock = threading.Lock()  # pyplot keeps global state
        self.loads = 0  # voices loaded from disk so far (the cache's hit/miss evidence)
        self._shared_key = self._shared_library_key()  # the encoders and pitch models the cache was chosen from

    # -- the library ---------------------------------------------------------------------------
    def voice_names(self) -> list[str]:
        return [m.name for m in store.list_models("rvc_voice")]

    def model_names(self, kind: str) -> list[str]:
        return [m.name for m in store.list_models(kind)]

    def models(self) -> list[store.ModelInfo]:
        """Every library entry, damaged ones included (with the reason)."""
        return store.list_models(include_damaged=True)

    @staticmethod
    def _shared_library_key() -> tuple:
        key = []
        for kind in ("hubert", "rmvpe"):
            for m in store.list_models(kind):
                cfg = m.path / artifact.CONFIG_NAME
                key.append((kind, m.name, cfg.stat().st_mtime_ns if cfg.exists() else 0))
        return tuple(key)

    def refresh(self) -> None:
        """Re-read the library: encoders and pitch models are chosen again at the next conversion
        if any was added, removed or replaced (also outside the page); changed voices reload."""
        key = self._shared_library_key()
        if key != self._shared_key:
            with self.lock.hold():
                self._shared.forget()
                self._shared_key = key

    def delete_model(self, name: str, kind: str) -> Path:
        """Remove a library model (one plain name; never anything outside the library)."""
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}")
        with self.lock.hold():
            path = store.remove(name, kind)
            with self._voices_lock:
                self._voices.pop(name, None) if kind == "rvc_voice" else None
            if kind != "rvc_voice":
                self._shared.forget()
                self._shared_key = self._shared_library_key()
        return path

    def rename_model(self, name: str, new_name: str, kind: str) -> Path:
        """Rename a library model; the new name must be plain and free."""
        from ..safety import OutputExistsError, check_name

        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}")
        check_name(name, what="model name")
        new_name = check_name((new_name or "").strip(), what="new name")
        folder = home() / KINDS[kind][1]
        old, new = folder / name, folder / new_name
        if not old.is_dir():
            raise store.ModelNotFoundError(f"no {KIND_WORDS[kind]} named {name!r}")
        with self.lock.hold():
            if os.path.lexists(new):
                raise OutputExistsError(f"a {KIND_WORDS[kind]} named {new_name!r} already exists")
            os.rename(old, new)
            with self._voices_lock:
                self._voices.pop(name, None)
            if kind != "rvc_voice":
                self._shared.forget()
                self._shared_key = self._shared_library_key()
        return new

    def is_loaded(self, name: str) -> bool:
        with self._voices_lock:
            return name in self._voices

    def voice_details(self, name: str) -> dict[str, str]:
        """Facts about a library voice, for the info panel (raises ModelNotFoundError)."""
        info = store.info(name, "rvc_voice")
        details = _summarise_voice(info)
        details["in memory"] = "yes (switching to it loads nothing)" if self.is_loaded(name) else "not yet loaded"
        return details

    def library_notes(self) -> list[str]:
        """What is missing from the library for a conversion, as hints a person can act on."""
        notes = []
        encoders = store.list_models("hubert")
        if not encoders:
            notes.append("No content encoder imported yet: import hubert_base.pt (or a ContentVec .pt) here.")
        if not store.list_models("rmvpe"):
            notes.append("No RMVPE pitch model: import rmvpe.pt for the rmvpe f0 method, or pick pm, harvest or dio.")
        if not store.list_models("rvc_voice"):
            notes.append("No voice yet: import a voice .pth (and its .index) here.")
        return notes

    def import_upload(self, path, *, name: str | None = None,
                      index: str | Path | None = None) -> ImportResult:
        """Import an uploaded checkpoint with the safe importer into the library.

        ``path`` is one file (a voice ``.pth``, ``hubert_base.pt``, ``rmvpe.pt``, a ``.safetensors``
        encoder) or the files of a Hugging Face encoder folder (``config.json`` with
        ``model.safetensors`` or ``pytorch_model.bin``), which are put in a folder of their own.
        ``name`` defaults to the file's stem (for a folder: ``hubert``). A model of the same name
        made from a different file is never overwritten. Raises the importer's errors, or
        ValueError for a bad name.
        """
        from ..safety import check_name

        paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
        folder = None
        if len(paths) > 1 or paths[0].name == "config.json":
            names = {p.name for p in paths}
            if "config.json" not in names or not names & {"model.safetensors", "pytorch_model.bin"}:
                raise ValueError("several files make a Hugging Face encoder folder: config.json and "
                                 "model.safetensors (or pytorch_model.bin)")
            folder = Path(tempfile.mkdtemp(prefix="hf-", dir=self.workdir))
            for p in paths:
                shutil.copyfile(p, folder / p.name)
            source, default = folder, "hubert"
        else:
            source, default = paths[0], paths[0].stem
        try:
            name = check_name((name or "").strip() or default, what="name")
            digest = artifact.sha256_file(source) if source.is_file() else None
            for kind, (_, sub) in KINDS.items():
                existing = home() / sub / name
                try:
                    config = artifact.read_config(existing)
                except (FileNotFoundError, ValueError):
                    continue
                if digest is None or config.get("source_sha256") != digest:
                    raise ValueError(f"a {KIND_WORDS[kind]} named {name!r} already exists (from "
                                     f"{config.get('source_name', 'another file')}); choose another name")
            result = import_model(source, name=name, index=index)
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        if result.model_type in ("hubert", "rmvpe") and not result.unchanged:
            # the shared models were chosen before this one existed; choose again next time
            with self.lock.hold():
                self._shared.forget()
                self._shared_key = self._shared_library_key()
        return result

    # -- status --------------------------------------------------------------------------------
    def status(self) -> str:
        """One line about the converter, shown to every tab."""
        if not self.lock.busy:
            with self._voices_lock:
                loaded = ", ".join(self._voices) or "none"
            return f"Converter idle · voices in memory: {loaded}"
        waiting = self.lock.waiting
        queue = f" · {waiting} waiting" if waiting else ""
        return f"Converter busy: {self.lock.holder or 'working'}{queue}"

    # -- a conversion --------------------------------------------------------------------------
    def check(self, voice: str, options: ConversionOptions, encoder: str | None = None) -> None:
        """What can be checked before decoding or loading anything, in the page's own words."""
        from ..batch import preflight

        try:
            preflight(voice, options, encoder=encoder or None, f0_method_given=False)
        except MlxRvcError as exc:
            raise PageError(_in_page_terms(str(exc))) from exc

    def convert(self, input_path: str | Path, voice: str, options: ConversionOptions,
                report: Report | None = None, *, encoder: str | None = None) -> JobOutput:
        """Decode, convert (one job at a time), write in the chosen format, draw the comparison.

        ``encoder``: a library content encoder's name (default: the first that fits the voice).
        Raises MlxRvcError / FileNotFoundError / ValueError with one-line messages.
        """
        with _Ticker(report or (lambda fraction, what: None)) as ticking:
            return self._convert(input_path, voice, options, ticking, encoder=encoder)

    def _convert(self, input_path, voice: str, options: ConversionOptions, report: Report, *,
                 encoder: str | None) -> JobOutput:
        if not voice:
            raise ValueError("choose a voice first (or import one)")
        if input_path is None or not str(input_path):
            raise ValueError("upload or record some audio first")
        self.refresh()  # an encoder or pitch model added or removed since the last job is noticed
        self.check(voice, options, encoder)
        log: list[str] = []
        from ..batch import format_rate

        rate, note = format_rate(options.output_format, _output_rate(voice, options))
        if note is not None:
            options = options.with_(resample_sr=rate)
            log.append(note)
        input_path = Path(input_path)
        report(0.0, "decoding the input")
        t0 = time.perf_counter()
        audio, sr = load_audio(input_path)
        decode_s = time.perf_counter() - t0
        job = self._new_job_dir()

        def waiting(ahead: int) -> None:
            report(0.0, f"queued: {ahead} conversion{'s' if ahead > 1 else ''} ahead")

        t_queue = time.perf_counter()
        with self.lock.hold(on_wait=waiting), _capture_warnings() as warned:
            queued_s = time.perf_counter() - t_queue
            if queued_s > 0.5:
                log.append(f"waited {queued_s:.1f} s for other conversions")
            self.lock.holder = f"loading voice {voice}"
            report(SPAN_LOAD[0], f"loading voice {voice}" if not self.is_loaded(voice) else f"voice {voice} (cached)")
            converter = self._converter(voice)
            converter.encoder_choice = encoder or None
            log.extend(self._collect_loads())
            log.extend(_option_warnings(converter, options))

            def progress(stage: str, fraction: float) -> None:
                self.lock.holder = f"{voice}: {stage}"
                a, b = SPAN_CONVERT
                report(a + (b - a) * fraction, stage)

            t0 = time.perf_counter()
            result = converter.convert(audio, sr, options, progress=progress)
            convert_s = time.perf_counter() - t0
            log.extend(self._collect_loads())
        log.extend(f"warning: {w}" for w in warned)

        report(SPAN_FINISH[0], f"writing {options.output_format}")
        t0 = time.perf_counter()
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", input_path.stem)[:60] or "input"
        output = write_audio(job / f"{stem}.{converter.voice.name}.{options.output_format}", result.audio,
                             result.sample_rate, subtype=subtype_for(options))
        original = write_audio(job / f"{stem}.original.wav", np.clip(audio, -1, 1), sr, subtype="PCM_16")
        write_s = time.perf_counter() - t0
        report(SPAN_FINISH[0] + 0.05, "drawing the comparison")
        t0 = time.perf_counter()
        picture = self._draw(job / "comparison.png", audio, sr, result, options, converter)
        draw_s = time.perf_counter() - t0
        report(1.0, "done")

        seconds = len(audio) / sr
        stages = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())
        log.append(f"{input_path.name} ({seconds:.2f} s at {sr} Hz) → {converter.voice.name}: "
                   f"converted in {convert_s:.2f} s ({convert_s / seconds:.2f} s per second of audio)")
        log.append(f"  stages (s): decode {decode_s:.2f}, {stages}, write {write_s:.2f}, picture {draw_s:.2f}")
        log.append(f"  wrote {output.name}: {options.output_format}, {_depth_words(options)}, "
                   f"{result.sample_rate} Hz, {len(result.audio) / result.sample_rate:.2f} s, "
                   f"{len(result.chunks)} chunk{'s' if len(result.chunks) != 1 else ''}")
        return JobOutput(output, original, picture, result, seconds, sr, log)

    # -- helpers -------------------------------------------------------------------------------
    def _loaded(self, what: str, seconds: float) -> None:
        self._load_events.append(f"loaded {what} in {seconds:.2f} s")

    def _collect_loads(self) -> list[str]:
        events, self._load_events = self._load_events, []
        return events

    def _converter(self, name: str) -> _Converter:
        """The cached converter of a library voice; loaded when new or when its files changed."""
        info = store.info(name, "rvc_voice")
        weights = info.path / artifact.WEIGHTS_NAME
        key = (str(info.path), weights.stat().st_mtime_ns if weights.exists() else 0,
               info.config.get("source_sha256"), info.config.get("index_sha256"))
        with self._voices_lock:
            cached = self._voices.get(name)
            if cached is not None and cached[0] == key:
                self._voices.move_to_end(name)
                return cached[1]
        t0 = time.perf_counter()
        converter = _Converter(info.path, self._shared)
        self.loads += 1
        self._loaded(f"voice {name}", time.perf_counter() - t0)
        with self._voices_lock:
            self._voices[name] = (key, converter)
            self._voices.move_to_end(name)
            while len(self._voices) > self.max_voices:
                dropped, _ = self._voices.popitem(last=False)
                self._load_events.append(f"unloaded voice {dropped} (keeping {self.max_voices} in memory)")
        return converter

    def _new_job_dir(self) -> Path:
        now = time.time()
        for old in self.workdir.iterdir():
            try:
                if old.is_dir() and now - old.stat().st_mtime > JOB_MAX_AGE_S:
                    shutil.rmtree(old)
            except OSError as exc:  # another tab's cleanup got there first, or a file is busy
                logger.info("could not delete old job directory %s: %s", old, exc)
        job = self.workdir / f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:8]}"
        job.mkdir()
        return job

    def _draw(self, path: Path, audio: np.ndarray, sr: int, result: ConversionResult,
              options: ConversionOptions, converter: _Converter) -> Path:
        from ..plots import comparison_figure, save_figure

        f0_in = f0_out = None
        if result.f0 is not None:
            # result.f0 covers the reflect-padded input; keep the frames of the audio itself
            pad = options.chunking.x_pad * 100
            frames = int(round(len(audio) / sr * 100))
            f0_out = np.asarray(result.f0[pad: pad + frames], np.float32)
            if options.f0_file is None:  # the tracked contour before the transposition
                f0_in = f0_out / np.float32(2 ** (options.pitch / 12))
        with self._plot_lock:
            fig = comparison_figure([("original", audio, sr),
                                     (f"converted ({converter.voice.name})", result.audio, result.sample_rate)],
                                    f0=[f0_in, f0_out])
            return save_figure(fig, path, dpi=80)


class _Ticker:
    """Passes progress on, and while a stage reports nothing (the whole-file pitch tracking, a
    model load) moves the bar on by itself every half second, never beyond the way to the next
    tenth of the job, with the stage's elapsed seconds in its text: a bar that stands still
    looks like a hang."""

    PERIOD_S = 0.5

    def __init__(self, report: Report) -> None:
        self._report = report
        self._last = (0.0, "", time.monotonic())
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, fraction: float, what: str) -> None:
        with self._lock:
            self._last = (fraction, what, time.monotonic())
        self._report(fraction, what)

    def _run(self) -> None:
        while not self._stop.wait(self.PERIOD_S):
            with self._lock:
                fraction, what, since = self._last
            idle = time.monotonic() - since
            if idle < self.PERIOD_S or not what or what == "done":
                continue
            ceiling = min(1.0, np.floor(fraction * 10 + 1) / 10) - 0.005
            moved = fraction + (ceiling - fraction) * (1 - np.exp(-idle / 20))
            try:
                self._report(float(max(fraction, moved)), f"{what} ({idle:.0f} s)")
            except Exception:  # noqa: BLE001 - a closed page must not break the conversion
                logger.debug("progress report failed", exc_info=True)

    def __enter__(self) -> "_Ticker":
        self._thread = threading.Thread(target=self._run, daemon=True, name="progress-ticker")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _output_rate(voice: str, options: ConversionOptions) -> int:
    """The rate a conversion writes (the pipeline's rule), from the voice's config alone."""
    if options.resample_sr >= 16000:
        return options.resample_sr
    return int(store.info(voice, "rvc_voice").config.get("sample_rate", 48000))


class PageError(MlxRvcError, ValueError):
    """A refusal worded for the page (its own widgets, not command-line options)."""


_PAGE_TERMS = (  # command-line words -> the page's
    ("--f0-method", "f0 method"), ("--pitch-model", "pitch model"), ("--encoder", "content encoder"),
    ("--index", "retrieval index"), ("--f0-file", "f0 curve"), ("--speaker", "Speaker id"), ("--seed", "Seed"),
    ("import one (hubert_base.pt) or give content encoder", "import hubert_base.pt (or a Hugging Face encoder "
     "folder) under 'Import a model', or pick another content encoder"),
    ("import one with `mlx-rvc import`", "import one under 'Import a model'"),
)


def _in_page_terms(text: str) -> str:
    import re as _re

    text = _re.sub(r" \((?:/|~)[^()]*\)", "", text)  # the library's path means nothing in a browser
    for cli, page in _PAGE_TERMS:
        text = text.replace(cli, page)
    return text


def _depth_words(options: ConversionOptions) -> str:
    if options.output_format in LOSSY_FORMATS:
        return "lossy"
    return "32-bit float" if options.bit_depth == 32 else f"{options.bit_depth}-bit"


def _option_warnings(converter: VoiceConverter, options: ConversionOptions) -> list[str]:
    """Options that have no effect with this voice, said out loud instead of silently ignored."""
    cfg = converter.voice.cfg
    out = []
    if not cfg.f0 and (options.pitch != 0 or options.f0_file is not None or options.f0_method != "rmvpe"):
        out.append("warning: this voice has no pitch input; pitch, f0 method and f0 file have no effect")
    if options.index_rate > 0 and options.index_path is None and converter.voice.index_path is None:
        out.append("warning: this voice has no retrieval index; index rate has no effect")
    if options.output_format in LOSSY_FORMATS and options.bit_depth != 16:
        out.append(f"warning: {options.output_format} is lossy; bit depth applies to wav and flac only")
    if 0 < options.resample_sr < 16000:
        out.append("warning: output rates below 16 kHz are ignored (as in the reference); "
                   "the voice's own rate is used")
    return out


class _WarningsHandler(logging.Handler):
    """Collects this thread's mlx_rvc warnings during one job, for the page's status log."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage().splitlines()[0])


@contextmanager
def _capture_warnings() -> Iterator[list[str]]:
    handler = _WarningsHandler()
    root = logging.getLogger("mlx_rvc")
    root.addHandler(handler)
    try:
        yield handler.messages
    finally:
        root.removeHandler(handler)
