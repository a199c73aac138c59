"""The Gradio page: widgets, and handlers that turn their values into :class:`Engine` calls.

Nothing here converts, loads or decodes by itself; every expected failure comes back as a
one-line message in the page (and the status log), never as a stack trace.
"""

from __future__ import annotations

import logging
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import gradio as gr

from ..audio import load_audio
from ..backend import PRECISION, PRECISIONS
from ..dsp.chunks import ChunkConfig
from ..errors import MlxRvcError
from ..options import BIT_DEPTHS, OUTPUT_FORMATS, UNVOICED_MODES, ConversionOptions
from ..pitch import METHODS
from .engine import KIND_WORDS, Engine

logger = logging.getLogger(__name__)

EXPECTED_ERRORS = (MlxRvcError, FileNotFoundError, ValueError, OSError)
LOG_LINES = 300  # the status log keeps this many lines
MAX_UPLOAD = "2gb"  # voices are ~50 MB, encoders ~200 MB; long recordings can be large
RESAMPLE_CHOICES = [("the voice's own rate", 0)] + [(f"{r / 1000:g} kHz", r) for r in
                                                     (16000, 22050, 24000, 32000, 40000, 44100, 48000, 96000)]
DEPTH_CHOICES = [("32-bit float" if b == 32 else f"{b}-bit", b) for b in BIT_DEPTHS]
CHUNK_FIELDS = [f.name for f in fields(ChunkConfig)]
CSS = """
#error { border: 1px solid #d33; border-radius: 6px; padding: 4px 12px; background: #fff3f3; color: #a11; }
#engine-status { font-size: 0.9em; opacity: 0.85; }
"""
AUTO_ENCODER = "automatic"
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],  # no web fonts: works offline
                       font_mono=["ui-monospace", "monospace"])


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, KeyError) and text.startswith("'"):
        text = text.strip("'")
    return text.splitlines()[0] if text else type(exc).__name__


def _failure(exc: BaseException, doing: str) -> str:
    """The message the page shows; unexpected errors are logged with their trace on the server."""
    if isinstance(exc, EXPECTED_ERRORS):
        return _one_line(exc)
    logger.exception("web app: %s failed", doing)
    return f"internal error while {doing} ({type(exc).__name__}: {_one_line(exc)}); the server log has details"


def _error(message: str):
    return gr.update(value=f"**Error:** {message}", visible=True)


def _no_error():
    return gr.update(value="", visible=False)


def _append(log: str, *lines: str) -> str:
    stamp = time.strftime("%H:%M:%S")
    out = (log.splitlines() if log else []) + [f"{stamp} {line}" for line in lines]
    return "\n".join(out[-LOG_LINES:])


def _table(title: str, rows: dict[str, str]) -> str:
    return f"| voice | **{title}** |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows.items())


def options_from(values: dict[str, Any]) -> ConversionOptions:
    """ConversionOptions from the widgets' values (keyed by field name; chunking by its own fields)."""
    def integer(name: str) -> int:
        v = values[name]
        if v is None or float(v) != int(v):
            raise ValueError(f"{FIELD_LABELS.get(name, name)} must be a whole number, got {v!r}")
        return int(v)

    for k in CHUNK_FIELDS:
        integer(k)
    try:
        chunking = ChunkConfig(**{k: int(values[k]) for k in CHUNK_FIELDS})
    except ValueError as exc:
        raise ValueError(f"Chunking: {exc}") from exc

    try:
        return _options(values, chunking, integer)
    except ValueError as exc:
        from ..batch import options_error

        raise ValueError(str(options_error(exc, FIELD_LABELS))) from exc


FIELD_LABELS = {  # ConversionOptions field -> the widget's label, for error messages
    "pitch": "Pitch (semitones)", "f0_method": "f0 method", "index_rate": "Index rate", "protect": "Protect",
    "rms_mix_rate": "RMS mix rate", "filter_radius": "Filter radius", "unvoiced": "Unvoiced frames",
    "resample_sr": "Sample rate", "speaker": "Speaker id", "seed": "Seed", "index_path": "other retrieval index",
    "f0_file": "f0 curve", "output_format": "Format", "bit_depth": "Bit depth", "chunking": "Chunking",
    "precision": "Precision", "x_pad": "context pad", "x_query": "cut search radius", "x_center": "cut every", "x_max": "no cut below",
}


def _options(values, chunking, integer) -> ConversionOptions:
    return ConversionOptions(
        pitch=integer("pitch"), f0_method=values["f0_method"], index_rate=float(values["index_rate"]),
        protect=float(values["protect"]), rms_mix_rate=float(values["rms_mix_rate"]),
        filter_radius=integer("filter_radius"), unvoiced=values["unvoiced"],
        resample_sr=integer("resample_sr"), speaker=integer("speaker"), seed=integer("seed"),
        index_path=values["index_path"] or None, f0_file=values["f0_file"] or None,
        output_format=values["output_format"], bit_depth=integer("bit_depth"), chunking=chunking,
        precision=values["precision"])


def build_app(engine: Engine | None = None) -> gr.Blocks:
    """The page. ``engine`` is shared by every browser tab (default: a new one)."""
    engine = engine or Engine()
    d = ConversionOptions()

    with gr.Blocks(title="mlx-rvc", analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
        gr.Markdown("# mlx-rvc · voice conversion\nPick or import a voice, upload or record audio, convert.")
        engine_status = gr.Markdown(engine.status(), elem_id="engine-status")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                voice = gr.Dropdown(label="Voice", choices=[], value=None, elem_id="voice",
                                    info="from the model library; switching keeps loaded voices in memory")
                refresh = gr.Button("Refresh list", size="sm")
                voice_info = gr.Markdown(elem_id="voice-info")
                encoder_pick = gr.Dropdown(label="Content encoder", choices=[AUTO_ENCODER], value=AUTO_ENCODER,
                                           elem_id="encoder-pick",
                                           info="automatic: the library's first encoder that fits the voice")
                with gr.Accordion("Import a model (.pth voice + .index, hubert_base.pt / rmvpe.pt, "
                                  "or a Hugging Face encoder folder's files)",
                                  open=False, elem_id="import-box") as import_box:
                    model_file = gr.File(label="checkpoint (.pth / .pt / .safetensors), or config.json + "
                                         "model.safetensors (or pytorch_model.bin) of an encoder folder",
                                         file_types=[".pth", ".pt", ".safetensors", ".bin", ".json"],
                                         file_count="multiple", elem_id="import-file")
                    index_file = gr.File(label="retrieval index (.index, voices only, optional)",
                                         file_types=[".index"], elem_id="import-index")
                    import_name = gr.Textbox(label="name in the library", placeholder="default: the file's name",
                                             elem_id="import-name")
                    import_btn = gr.Button("Import", elem_id="import-btn")
                with gr.Accordion("Manage the library (delete, rename)", open=False, elem_id="manage-box"):
                    manage_pick = gr.Dropdown(label="model", choices=[], value=None, elem_id="manage-pick")
                    manage_name = gr.Textbox(label="new name", elem_id="manage-name")
                    with gr.Row():
                        rename_btn = gr.Button("Rename", size="sm", elem_id="rename-btn")
                        delete_btn = gr.Button("Delete", size="sm", variant="stop", elem_id="delete-btn")
            with gr.Column(scale=3, min_width=420):
                source = gr.Audio(label="Input: upload a file (any common format) or record",
                                  sources=["upload", "microphone"], type="filepath", elem_id="input-audio")
                input_info = gr.Markdown(elem_id="input-info")
                with gr.Row():
                    pitch = gr.Slider(-24, 24, value=d.pitch, step=1, label="Pitch (semitones)",
                                      info="+12 = one octave up")
                    f0_method = gr.Radio(list(METHODS), value=d.f0_method, label="f0 method",
                                         info="rmvpe is the most robust; pm is fastest")
                index_rate = gr.Slider(0, 1, value=d.index_rate, step=0.01, label="Index rate",
                                       info="how much of the voice's retrieved features replace the input's")
                with gr.Accordion("Advanced options", open=False, elem_id="advanced"):
                    with gr.Row():
                        protect = gr.Slider(0, 0.5, value=d.protect, step=0.01, label="Protect",
                                            info="keep input features on unvoiced frames (0.5 = off); "
                                                 "acts only with unvoiced = keep")
                        rms_mix_rate = gr.Slider(0, 1, value=d.rms_mix_rate, step=0.01, label="RMS mix rate",
                                                 info="1 = loudness as synthesized, 0 = the input's envelope")
                    with gr.Row():
                        filter_radius = gr.Slider(0, 7, value=d.filter_radius, step=1, label="Filter radius",
                                                  info="≥ 3 median-filters harvest/dio pitch")
                        unvoiced = gr.Radio(list(UNVOICED_MODES), value=d.unvoiced, label="Unvoiced frames",
                                            info="interpolate pitch (2026 reference) or keep them (classic)")
                    with gr.Row():
                        speaker = gr.Number(d.speaker, precision=0, minimum=0, label="Speaker id")
                        seed = gr.Number(d.seed, precision=0, label="Seed", info="equal seeds, equal audio")
                        precision = gr.Radio(list(PRECISIONS), value=PRECISION, label="Precision",
                                             info="tf32: faster matrix products on GPUs that have them, "
                                                  "less exact; chosen before the first conversion")
                    with gr.Row():
                        index_path = gr.File(label="other retrieval index (optional)", file_types=[".index"])
                        f0_file = gr.File(label="f0 curve (optional CSV: seconds,Hz)", file_types=[".csv", ".txt"])
                    gr.Markdown("**Output**")
                    with gr.Row():
                        output_format = gr.Radio(list(OUTPUT_FORMATS), value=d.output_format, label="Format",
                                                 elem_id="output-format")
                        bit_depth = gr.Radio(DEPTH_CHOICES, value=d.bit_depth, label="Bit depth (wav/flac)",
                                             elem_id="bit-depth")
                        resample_sr = gr.Dropdown(RESAMPLE_CHOICES, value=d.resample_sr, label="Sample rate",
                                                  elem_id="resample-sr")
                    gr.Markdown("**Chunking** (seconds; long inputs are cut at quiet points)")
                    with gr.Row():
                        chunk_widgets = {
                            "x_pad": gr.Number(d.chunking.x_pad, precision=0, minimum=1, label="context pad"),
                            "x_query": gr.Number(d.chunking.x_query, precision=0, minimum=1, label="cut search radius"),
                            "x_center": gr.Number(d.chunking.x_center, precision=0, minimum=2, label="cut every"),
                            "x_max": gr.Number(d.chunking.x_max, precision=0, minimum=3, label="no cut below"),
                        }
                convert_btn = gr.Button("Convert", variant="primary", elem_id="convert-btn")
                with gr.Accordion("Convert several files", open=False, elem_id="batch-box"):
                    batch_files = gr.File(label="audio files", file_count="multiple", elem_id="batch-files")
                    batch_btn = gr.Button("Convert all", elem_id="batch-btn")
                    batch_out = gr.File(label="converted files", file_count="multiple", interactive=False,
                                        elem_id="batch-out")
        error = gr.Markdown(visible=False, elem_id="error")
        gr.Markdown("## Result")
        with gr.Row():
            original = gr.Audio(label="Original", type="filepath", interactive=False, elem_id="original-audio")
            converted = gr.Audio(label="Converted", type="filepath", interactive=False, elem_id="converted-audio")
        gr.Markdown("**Original vs converted**: waveforms, spectrograms and the f0 contour")
        comparison = gr.Image(label="comparison", show_label=False, type="filepath", interactive=False,
                              elem_id="comparison", format="png")
        download = gr.File(label="Download the converted file", interactive=False, elem_id="download", height=110)
        log = gr.Textbox(label="Status log", lines=10, max_lines=20, interactive=False, autoscroll=True,
                         elem_id="status-log")
        timer = gr.Timer(1.0)

        option_widgets: dict[str, Any] = {
            "pitch": pitch, "f0_method": f0_method, "index_rate": index_rate, "protect": protect,
            "rms_mix_rate": rms_mix_rate, "filter_radius": filter_radius, "unvoiced": unvoiced,
            "resample_sr": resample_sr, "speaker": speaker, "seed": seed, "index_path": index_path,
            "f0_file": f0_file, "output_format": output_format, "bit_depth": bit_depth, "precision": precision,
            **chunk_widgets,
        }
        missing = set(ConversionOptions.field_names()) - set(option_widgets) - {"chunking"}
        if missing:  # a new option must get a widget, or the page would silently ignore it
            raise RuntimeError(f"the web app has no widget for option(s): {', '.join(sorted(missing))}")
        option_names = list(option_widgets)

        # -- handlers ----------------------------------------------------------------------------
        def info_for(name: str | None):
            notes = engine.library_notes()
            text = "".join(f"- {n}\n" for n in notes)
            if not name:
                return text or "No voice selected.", gr.update()
            try:
                details = engine.voice_details(name)
            except EXPECTED_ERRORS as exc:
                return f"{text}\n{_one_line(exc)}", gr.update()
            speakers = int(details["speakers"])
            return (f"{text}\n{_table(name, details)}",
                    gr.update(maximum=max(speakers - 1, 0), info=f"0..{speakers - 1}"))

        def library_choices(current_encoder: str | None = None):
            encoders = [AUTO_ENCODER] + engine.model_names("hubert")
            entries = [(f"{KIND_WORDS[m.kind]}: {m.name}" + (f" (damaged: {m.damaged})" if m.damaged else ""),
                        f"{m.kind}/{m.name}") for m in engine.models()]
            return (gr.update(choices=encoders, value=current_encoder if current_encoder in encoders else AUTO_ENCODER),
                    gr.update(choices=entries, value=None))

        def list_voices(current: str | None, current_encoder: str | None = None):
            engine.refresh()  # encoders or pitch models changed outside the page are chosen again
            names = engine.voice_names()
            value = current if current in names else (names[0] if names else None)
            text, speaker_update = info_for(value)
            return (gr.update(choices=names, value=value), text, speaker_update, gr.update(open=not names),
                    *library_choices(current_encoder))

        def on_manage(action: str, entry: str | None, new_name: str, current: str | None, current_encoder: str | None,
                      log_text: str):
            try:
                if not entry:
                    raise ValueError("choose a model to " + action)
                kind, name = entry.split("/", 1)
                if action == "delete":
                    engine.delete_model(name, kind)
                    line = f"deleted {KIND_WORDS[kind]} {name}"
                else:
                    new = engine.rename_model(name, new_name, kind)
                    line = f"renamed {KIND_WORDS[kind]} {name} to {new.name}"
                    current = new.name if current == name else current
            except Exception as exc:  # noqa: BLE001 (_failure logs what is unexpected)
                message = _failure(exc, f"{action} a model")
                return (gr.update(),) * 6 + (gr.update(), _error(message), _append(log_text, f"error: {message}"))
            return (*list_voices(current, current_encoder), "", _no_error(), _append(log_text, line))

        def on_voice(name: str | None):
            return info_for(name)

        def on_input(path: str | None, log_text: str):
            if not path:
                return "", _no_error(), log_text
            try:
                audio, sr = load_audio(path)
            except EXPECTED_ERRORS as exc:
                message = _failure(exc, "reading the input")
                return "", _error(message), _append(log_text, f"error: {message}")
            text = f"{Path(path).name}: {len(audio) / sr:.2f} s at {sr} Hz"
            return text, _no_error(), _append(log_text, f"input {text}")

        def on_import(model, index: str | None, name: str, current: str | None, current_encoder: str | None,
                      log_text: str):
            keep = (gr.update(), *info_for(current), gr.update(), gr.update(), gr.update())
            files = [m for m in (model if isinstance(model, list) else [model]) if m]
            if not files:
                message = "choose a checkpoint file (.pth, .pt or .safetensors) to import"
                return (*keep, gr.update(), gr.update(), _error(message), _append(log_text, f"error: {message}"))
            try:
                result = engine.import_upload(files if len(files) > 1 else files[0], name=name, index=index)
            except Exception as exc:  # noqa: BLE001 (_failure logs what is unexpected)
                message = _failure(exc, "importing")
                return (*keep, gr.update(), gr.update(), _error(message), _append(log_text, f"error: import: {message}"))
            what = KIND_WORDS.get(result.model_type, result.model_type)
            state = "already in the library" if result.unchanged else "imported"
            line = f"{state}: {what} {result.path.name} ({', '.join(Path(f).name for f in files)})"
            # the name box is emptied: the next import gets its own file's name, not this one's
            if result.model_type != "rvc_voice":
                return (gr.update(), *info_for(current), None, None, "", *library_choices(current_encoder),
                        _no_error(), _append(log_text, line))
            names = engine.voice_names()
            text, speaker_update = info_for(result.path.name)
            return (gr.update(choices=names, value=result.path.name), text, speaker_update, None, None, "",
                    *library_choices(current_encoder), _no_error(), _append(log_text, line))

        def on_format(fmt: str, depth: int):
            if fmt in ("ogg", "mp3"):
                return gr.update(interactive=False)
            if fmt == "flac" and depth == 32:
                return gr.update(value=24, interactive=True)
            return gr.update(interactive=True)

        def on_convert(path: str | None, name: str | None, enc: str | None, log_text: str, *values,
                       progress=gr.Progress()):
            none = (None,) * 4  # a failed conversion clears the previous results: they are not its results
            try:
                options = options_from(dict(zip(option_names, values)))
                job = engine.convert(path, name, options, encoder=None if enc in (None, AUTO_ENCODER) else enc,
                                     report=lambda fraction, what: progress(fraction, desc=what))
            except Exception as exc:  # noqa: BLE001 (_failure logs what is unexpected)
                message = _failure(exc, "converting")
                return (*none, _error(message), _append(log_text, f"error: {message}"), gr.update())
            text, _ = info_for(name)
            return (str(job.original), str(job.output), str(job.picture), str(job.output), _no_error(),
                    _append(log_text, *job.log), text)

        def on_batch(paths, name: str | None, enc: str | None, log_text: str, *values, progress=gr.Progress()):
            files = [p for p in (paths or []) if p]
            try:
                if not files:
                    raise ValueError("choose some audio files to convert")
                options = options_from(dict(zip(option_names, values)))
            except Exception as exc:  # noqa: BLE001
                message = _failure(exc, "converting")
                return None, _error(message), _append(log_text, f"error: {message}")
            done, lines, failed = [], [], 0
            for i, p in enumerate(files):
                def report(fraction: float, what: str, i: int = i) -> None:
                    progress((i + fraction) / len(files), desc=f"file {i + 1}/{len(files)}: {what}")

                try:
                    job = engine.convert(p, name, options, report=report,
                                         encoder=None if enc in (None, AUTO_ENCODER) else enc)
                    done.append(str(job.output))
                    lines.append(f"batch: {Path(p).name} -> {job.output.name}")
                except Exception as exc:  # noqa: BLE001 - one file's failure does not end the batch
                    failed += 1
                    lines.append(f"batch: failed {Path(p).name}: {_failure(exc, 'converting')}")
            lines.append(f"batch: {len(done)} converted, {failed} failed")
            err = _error(f"{failed} of {len(files)} files failed (see the status log)") if failed else _no_error()
            return done or None, err, _append(log_text, *lines)

        # -- wiring ------------------------------------------------------------------------------
        speaker_box = [voice, voice_info, speaker, import_box, encoder_pick, manage_pick]
        blocks.load(list_voices, [voice, encoder_pick], speaker_box)
        refresh.click(list_voices, [voice, encoder_pick], speaker_box)
        rename_btn.click(lambda *a: on_manage("rename", *a), [manage_pick, manage_name, voice, encoder_pick, log],
                         [*speaker_box, manage_name, error, log], concurrency_limit=1)
        delete_btn.click(lambda *a: on_manage("delete", *a), [manage_pick, manage_name, voice, encoder_pick, log],
                         [*speaker_box, manage_name, error, log], concurrency_limit=1)
        batch_btn.click(on_batch, [batch_files, voice, encoder_pick, log, *option_widgets.values()],
                        [batch_out, error, log], concurrency_limit=16, concurrency_id="convert")
        voice.change(on_voice, voice, [voice_info, speaker])
        source.change(on_input, [source, log], [input_info, error, log])
        import_btn.click(on_import, [model_file, index_file, import_name, voice, encoder_pick, log],
                         [voice, voice_info, speaker, model_file, index_file, import_name, encoder_pick, manage_pick,
                          error, log], concurrency_limit=1)
        output_format.change(on_format, [output_format, bit_depth], bit_depth)
        # Many conversions may wait at once: the engine's FIFO lock runs them one at a time and
        # each waiting one shows its place in the queue in its own progress bar.
        convert_btn.click(on_convert, [source, voice, encoder_pick, log, *option_widgets.values()],
                          [original, converted, comparison, download, error, log, voice_info],
                          concurrency_limit=16, concurrency_id="convert", api_name="convert",
                          show_progress_on=[converted, comparison])
        timer.tick(engine.status, None, engine_status, show_progress="hidden", queue=False)
    return blocks


def launch(*, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           engine: Engine | None = None, **kwargs: Any) -> gr.Blocks:
    """Build and serve the page (bound to ``host``, loopback by default). Extra keyword
    arguments go to :meth:`gradio.Blocks.launch` (e.g. ``prevent_thread_lock=True``)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: anyone who can reach it may import models and convert audio", host)
    blocks = build_app(engine)
    blocks.queue(default_concurrency_limit=4)
    blocks.launch(server_name=host, server_port=port, share=share, ssr_mode=False, theme=THEME, css=CSS,
                  max_file_size=MAX_UPLOAD, footer_links=["gradio", "settings"], **kwargs)
    return blocks
