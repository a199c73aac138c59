"""The ``mlx-rvc`` command: a thin shell over the library, one subcommand per job."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import MlxRvcError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Retrieval-based Voice Conversion on MLX, checked against the PyTorch reference.")
console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print("[bold red]error:[/] " + _escape(message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.callback()
def _settings(
    precision: Optional[str] = typer.Option(None, "--precision", help="float32 (default) or tf32: precision of "
                                            "matrix products on GPUs that offer TF32 (MLX_RVC_PRECISION)"),
    form: Optional[str] = typer.Option(None, "--form", help="cpu or gpu: how models are computed (default: what "
                                       "suits MLX's device; MLX_RVC_FORM)"),
) -> None:
    """Process-wide settings, given before the command."""
    from . import forms
    from .backend import set_precision

    try:
        if precision is not None:
            set_precision(precision)
        if form is not None:
            forms.force(form)
    except MlxRvcError as exc:
        _fail(str(exc))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _one_line(exc: BaseException) -> str:
    from .batch import one_line

    return one_line(exc)


@app.command()
def info() -> None:
    """Show versions, the compute device and which BLAS serves MLX's CPU matmuls."""
    from .backend import describe

    table = Table(show_header=False, box=None)
    for k, v in describe().items():
        table.add_row(k, v)
    console.print(table)


@app.command("import")
def import_cmd(
    source: Path = typer.Argument(..., help="voice .pth, hubert_base.pt / HF encoder dir, or rmvpe.pt"),
    index: Optional[Path] = typer.Option(None, "--index", help="retrieval .index to keep with a voice"),
    name: Optional[str] = typer.Option(None, "--name", help="name in the model library (default: file stem)"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the model directory here instead"),
    dtype: str = typer.Option("float32", "--dtype", help="stored precision: float32 or float16"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing model of that name/folder"),
) -> None:
    """Import a checkpoint safely (no pickled code runs) into an MLX model directory."""
    from .importer import import_model

    if name is not None and out is not None:
        _fail("give --name or --out, not both")
    try:
        result = import_model(source, out=out, name=name, dtype=dtype, index=index, overwrite=overwrite)
    except (MlxRvcError, OSError, ValueError) as exc:
        _fail(_one_line(exc))
    state = "already imported" if result.unchanged else "imported"
    console.print(f"{state}: {result.model_type} -> {result.path}")


@app.command()
def parity(
    fixtures: list[Path] = typer.Argument(..., help="fixture .npz files (fixtures.json beside them)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON report instead of tables"),
    save: Optional[Path] = typer.Option(None, "--save", help="write produced arrays to this .npz "
                                        "(with several fixtures: a directory)"),
) -> None:
    """Compare the MLX port with golden PyTorch-reference fixtures; exit 1 if a tolerance fails."""
    from .parity import run_parity, save_produced

    reports = []
    for path in fixtures:
        try:
            report = run_parity(path)
        except (MlxRvcError, FileNotFoundError) as exc:
            _fail(str(exc))
        reports.append(report)
        if save is not None:
            target = save / path.name if len(fixtures) > 1 else save
            save_produced(report, target)
        if not as_json:
            _print_report(report)
    if as_json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    raise typer.Exit(0 if all(r.passed for r in reports) else 1)


# --- further subcommands (f0, convert, bench, demo...) are registered below this line ---


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (loopback: only this machine)"),
    port: Optional[int] = typer.Option(None, "--port", help="port (default: the first free one from 7860)"),
    share: bool = typer.Option(False, "--share/--no-share", help="also publish a public Gradio link"),
) -> None:
    """Start the web app: pick or import a voice, upload or record, convert, compare, download."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        _fail("the web app needs Gradio: pip install 'mlx-rvc[ui]'")
    from .webui import launch

    launch(host=host, port=port, share=share)


@app.command()
def convert(
    inputs: list[Path] = typer.Argument(..., help="audio files or folders (searched recursively)"),
    model: str = typer.Option(..., "-m", "--model", help="voice: library name or imported directory"),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="output file (one input) or folder [./converted]"),
    pitch: int = typer.Option(0, "--pitch", help="transpose in semitones (-24..24)"),
    f0_method: Optional[str] = typer.Option(None, "--f0-method", help="rmvpe, pm, harvest, dio, fcpe, crepe or "
                                            "crepe-tiny [rmvpe]"),
    index: Optional[Path] = typer.Option(None, "--index", help="retrieval .index (default: the voice's own)"),
    index_rate: float = typer.Option(0.75, "--index-rate", help="0..1: weight of retrieved features"),
    protect: float = typer.Option(0.33, "--protect", help="0..0.5: keep input features on unvoiced frames"),
    rms_mix_rate: float = typer.Option(0.25, "--rms-mix-rate", help="0..1: 1 keeps the voice's loudness"),
    filter_radius: int = typer.Option(3, "--filter-radius", help="0..7: median filter for harvest/dio pitch"),
    unvoiced: str = typer.Option("interpolate", "--unvoiced", help="interpolate (2026 reference) or keep (classic)"),
    f0_file: Optional[Path] = typer.Option(None, "--f0-file", help="CSV of seconds,Hz replacing the tracked pitch"),
    resample_sr: int = typer.Option(0, "--resample-sr", help="output rate in Hz (0 = the voice's)"),
    speaker: int = typer.Option(0, "--speaker", help="speaker id of multi-speaker voices"),
    seed: int = typer.Option(0, "--seed", help="seed of the random draws (≥ 0)"),
    fmt: str = typer.Option("wav", "--format", help="wav, flac, ogg or mp3"),
    bit_depth: int = typer.Option(16, "--bit-depth", help="16, 24 or 32 (float)"),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="content encoder (default: the library's)"),
    pitch_model: Optional[str] = typer.Option(None, "--pitch-model", help="RMVPE model (default: the library's)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing outputs (default: skip them)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary"),
) -> None:
    """Convert audio files into a voice. Exit status: 0 all converted (or skipped), 1 some failed,
    2 nothing could start."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .batch import convert_files, find_inputs, options_error, preflight, summary
    from .options import ConversionOptions
    from .safety import writable_folder

    def refuse(message: str) -> None:
        if as_json:
            print(json.dumps({"error": message, "converted": 0, "skipped": 0, "failed": 0, "files": []}, indent=2))
        _fail(message)

    try:
        options = ConversionOptions(
            pitch=pitch, f0_method=f0_method or "rmvpe", index_path=index, index_rate=index_rate, protect=protect,
            rms_mix_rate=rms_mix_rate, filter_radius=filter_radius, unvoiced=unvoiced, f0_file=f0_file,
            resample_sr=resample_sr, speaker=speaker, seed=seed, output_format=fmt, bit_depth=bit_depth)
    except ValueError as exc:
        refuse(str(options_error(exc)))
    try:
        warnings = preflight(model, options, encoder=encoder, pitch_model=pitch_model,
                             f0_method_given=f0_method is not None)
        files = find_inputs(inputs)
        out_folder = (out if out is not None and (out.is_dir() or out.suffix.lower() not in _audio_suffixes())
                      else Path("converted") if out is None else None)
        if out_folder is not None and out_folder.is_dir():  # earlier outputs found by a folder search are no inputs
            explicit = {p.resolve() for p in inputs if not p.is_dir()}
            real_out = out_folder.resolve()
            files = [f for f in files if f.resolve() in explicit or not f.resolve().is_relative_to(real_out)]
        if not files:
            refuse("no audio files found in the inputs")
        if out is not None and len(files) > 1 and out.exists() and not out.is_dir():
            refuse(f"--out {out} is a file; with several inputs give a folder")
        roots = {f: p for p in inputs if p.is_dir() for f in files if f.is_relative_to(p)}
        single_file = len(files) == 1 and out is not None and out.suffix.lower() in _audio_suffixes() and not out.is_dir()
        writable_folder(out.parent if single_file else (out if out is not None else Path("converted")),
                        what="output folder")
    except (MlxRvcError, OSError, ValueError) as exc:
        refuse(_one_line(exc))
    for w in warnings:
        err_console.print(f"[yellow]warning:[/] {_escape(w)}", highlight=False, soft_wrap=True)
    try:
        from .pipeline import VoiceConverter

        converter = VoiceConverter(model, encoder=encoder, pitch_model=pitch_model)
    except (MlxRvcError, OSError, ValueError, RuntimeError) as exc:
        refuse(f"voice {model!r}: {_one_line(exc)}")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=err_console, disable=as_json) as bar:
        files_task = bar.add_task("files", total=len(files))
        step = bar.add_task("", total=1.0)

        def on_file(i: int, path: Path) -> None:
            bar.update(files_task, completed=i, description=f"file {i + 1}/{len(files)}: {_escape(path.name)}")
            bar.reset(step)

        def on_progress(stage: str, fraction: float) -> None:
            bar.update(step, completed=fraction, description=f"  {stage}")

        results = convert_files(converter, files, options, out=out, roots=roots, overwrite=overwrite,
                                on_file=on_file, progress=on_progress)
        bar.update(files_task, completed=len(files))
    counts = summary(results)
    if as_json:
        print(json.dumps({"voice": converter.voice.name, "options": options.as_dict(), **counts,
                          "warnings": warnings, "files": [r.as_dict() for r in results]}, indent=2))
    else:
        for r in results:
            if r.status == "converted":
                speed = r.seconds / r.audio_seconds if r.audio_seconds else 0
                console.print(f"[green]ok[/] {_escape(str(r.input))} -> {_escape(str(r.output))} "
                              f"({r.seconds:.1f} s, {speed:.2f} s per s of audio)"
                              + (f"; {_escape(r.note)}" if r.note else ""), highlight=False, soft_wrap=True)
            elif r.status == "skipped":
                console.print(f"[yellow]skipped[/] {_escape(str(r.input))}: {_escape(r.error or '')}", highlight=False,
                              soft_wrap=True)
            else:
                console.print(f"[red]failed[/] {_escape(str(r.input))}: {_escape(r.error or '')}", highlight=False,
                              soft_wrap=True)
        console.print(f"{counts['converted']} converted, {counts['skipped']} skipped, {counts['failed']} failed",
                      highlight=False)
    raise typer.Exit(1 if counts["failed"] else 0)


def _audio_suffixes() -> set[str]:
    from .batch import AUDIO_SUFFIXES

    return AUDIO_SUFFIXES


@app.command()
def f0(
    input: Path = typer.Argument(..., help="audio file"),
    method: str = typer.Option("rmvpe", "--method", help="rmvpe, pm, harvest, dio, fcpe, crepe or crepe-tiny"),
    pitch: int = typer.Option(0, "--pitch", help="shift in semitones (-24..24)"),
    unvoiced: str = typer.Option("keep", "--unvoiced", help="keep (0 Hz) or interpolate unvoiced frames"),
    filter_radius: int = typer.Option(3, "--filter-radius", help="0..7; ≥3 median-filters harvest/dio"),
    pitch_model: Optional[str] = typer.Option(None, "--pitch-model", help="RMVPE model (default: the library's)"),
    out: Optional[Path] = typer.Option(None, "--out", help="write seconds,Hz CSV here"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="write waveform/spectrogram with the f0 curve"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing --out/--plot files"),
) -> None:
    """Track the pitch of a recording: a CSV contour and a picture."""
    import numpy as np

    from . import pitch as pitch_mod
    from .audio import load_audio
    from .pipeline import prepare_input
    from .safety import atomic_file, check_not_input, check_target

    if method not in pitch_mod.METHODS:
        _fail(f"--method: unknown method {method!r}; choose one of {', '.join(pitch_mod.METHODS)}")
    if not -24 <= pitch <= 24:
        _fail(f"--pitch must be in -24..24 semitones, got {pitch}")
    if not 0 <= filter_radius <= 7:
        _fail(f"--filter-radius must be in 0..7, got {filter_radius}")
    if unvoiced not in ("keep", "interpolate"):
        _fail(f"--unvoiced must be keep or interpolate, got {unvoiced!r}")
    try:
        for option, target in (("--out", out), ("--plot", plot)):
            if target is not None:
                check_not_input(target, [input], what=option)
                check_target(target, overwrite=overwrite, what=option)
        if out is not None and plot is not None and _same_path(out, plot):
            _fail("--out and --plot name the same file")
        from .store import resolve

        if method == "rmvpe":
            resolve(pitch_model, "rmvpe")
        audio, sr = load_audio(input)
        x16 = prepare_input(audio, sr)  # what a conversion tracks: checked, mono, 16 kHz, peak-guarded
        model = None
        if method == "rmvpe":
            from .store import load_pitch_model

            model = load_pitch_model(pitch_model)
        raw = pitch_mod.estimate(x16, method=method, rmvpe=lambda: model, filter_radius=filter_radius)
        frames = len(x16) // 160
        _, hz = pitch_mod.postprocess(pitch_mod.align(raw, method=method, p_len=frames)[:frames],
                                      semitones=pitch, unvoiced=unvoiced)
        times = np.arange(len(hz)) * 0.01
        voiced = hz > 0
        if out is not None:
            with atomic_file(out, overwrite=overwrite, inputs=[input], what="--out") as tmp:
                with open(tmp, "w") as fh:
                    fh.write("seconds,hz\n")
                    fh.writelines(f"{t:.2f},{f:.3f}\n" for t, f in zip(times, hz))
        if plot is not None:
            from .plots import comparison_figure, save_figure

            save_figure(comparison_figure([(input.name, audio, sr)], f0=[hz]), plot, overwrite=overwrite,
                        inputs=[input] + ([out] if out is not None else []))
    except (MlxRvcError, OSError, ValueError) as exc:
        _fail(_one_line(exc))
    median = float(np.median(hz[voiced])) if voiced.any() else 0.0
    console.print(f"{input.name}: {len(hz)} frames, {voiced.mean():.0%} voiced, median {median:.1f} Hz"
                  + (f", wrote {out}" if out else "") + (f", {plot}" if plot else ""), highlight=False, markup=False)


def _same_path(a: Path, b: Path) -> bool:
    import os

    return os.path.realpath(a) == os.path.realpath(b)


@app.command()
def compare(
    a: Path = typer.Argument(..., help="first audio file (the reference)"),
    b: Path = typer.Argument(..., help="second audio file"),
    png: Optional[Path] = typer.Option(None, "--png", help="write waveforms and spectrograms side by side"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --png file"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Compare two audio files: spectrogram and waveform correlation, RMS ratio, and a picture."""
    import numpy as np

    from .audio import load_audio, resample
    from .metrics import audio_diff
    from .safety import check_not_input, check_target

    try:
        if png is not None:
            check_not_input(png, [a, b], what="--png")
            check_target(png, overwrite=overwrite, what="--png")
        xa, sra = load_audio(a)
        xb, srb = load_audio(b)
    except (MlxRvcError, OSError, ValueError) as exc:
        _fail(_one_line(exc))
    for path, x in ((a, xa), (b, xb)):
        if not np.all(np.isfinite(x)):
            _fail(f"{path.name}: contains NaN or infinite samples")
    xb_at_a = resample(xb, orig_sr=srb, target_sr=sra)
    diff = audio_diff(xb_at_a, xa)
    report = {"a": str(a), "b": str(b), "sample_rate_a": sra, "sample_rate_b": srb,
              "seconds_a": len(xa) / sra, "seconds_b": len(xb) / srb, **diff.as_dict()}
    if png is not None:
        from .plots import comparison_figure, save_figure

        try:
            save_figure(comparison_figure([(a.name, xa, sra), (b.name, xb, srb)]), png, overwrite=overwrite,
                        inputs=[a, b])
        except (MlxRvcError, OSError, ValueError) as exc:
            _fail(_one_line(exc))
        report["png"] = str(png)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for k, v in report.items():
        console.print(f"{k:>14}: {v:.6g}" if isinstance(v, float) else f"{k:>14}: {v}", highlight=False, markup=False)


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the imported voices, content encoders and pitch models (damaged entries with the reason)."""
    from .importer import home
    from .store import list_models

    models = list_models(include_damaged=True)
    if as_json:
        print(json.dumps([{"name": m.name, "kind": m.kind, "path": str(m.path), "summary": m.summary(),
                           "damaged": m.damaged} for m in models], indent=2))
        return
    if not models:
        console.print(f"no models in {_escape(str(home()))}; import one with `mlx-rvc import`", highlight=False)
        return
    table = Table("name", "kind", "details", "path")
    for m in models:
        details = f"[red]{_escape(m.summary())}[/]" if m.damaged else _escape(m.summary())
        table.add_row(_escape(m.name), m.kind, details, _escape(str(m.path)))
    console.print(table)


@app.command()
def remove(
    name: str = typer.Argument(..., help="library name"),
    kind: str = typer.Option("rvc_voice", "--kind", help="rvc_voice, hubert, rmvpe, fcpe or crepe"),
) -> None:
    """Delete a model from the library."""
    from .importer import KINDS
    from .store import remove as remove_model

    if kind not in KINDS:
        _fail(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    try:
        path = remove_model(name, kind)
    except (MlxRvcError, OSError, KeyError) as exc:
        _fail(_one_line(exc))
    console.print(f"removed {_escape(str(path))}", highlight=False)


@app.command()
def bench(
    target: str = typer.Argument("pipeline", help="pipeline (whole conversion), synth (synthesizer only), "
                                 "precision (each precision's speed and distance from float32), pitch (f0 "
                                 "accuracy on known contours) or blas"),
    seconds: float = typer.Option(30.0, "--seconds", help="seconds of audio per run (synth)"),
    lengths: str = typer.Option("5,30", "--lengths", help="pipeline: comma-separated seconds, e.g. 5,30,600"),
    model: Optional[str] = typer.Option(None, "-m", "--model", help="pipeline: a voice (default: full-size untrained models)"),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="pipeline: content encoder"),
    pitch_model: Optional[str] = typer.Option(None, "--pitch-model", help="pipeline: RMVPE model"),
    f0_method: str = typer.Option("rmvpe", "--f0-method", help="pipeline: pitch tracker"),
    audio: Optional[Path] = typer.Option(None, "--audio", help="pipeline: convert this file instead of generated speech"),
    version: str = typer.Option("v2", "--version", help="voice version: v1 or v2"),
    rate: int = typer.Option(48000, "--rate", help="voice sample rate: 32000, 40000 or 48000"),
    no_f0: bool = typer.Option(False, "--no-f0", help="benchmark a voice without pitch"),
    repeats: int = typer.Option(2, "--repeats", help="timed runs after one warm-up (pipeline: 0 = cold run only)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    methods: Optional[str] = typer.Option(None, "--methods", help="pitch: comma-separated f0 methods (default: all that can run)"),
    save_clips: Optional[Path] = typer.Option(None, "--save-clips", help="pitch: also write the clips and true f0 (npz)"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="pitch: torchfcpe/torchcrepe f0 of the clips (npz)"),
    estimates: Optional[Path] = typer.Option(None, "--estimates", help="pitch: npz of f0 estimates, reused if present, written"),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="pitch: write the scores as JSON here"),
) -> None:
    """Measure speed (and peak memory); benchmarks are never tests."""
    from . import bench as b

    if target == "blas":
        results = [b.bench_blas()]
    elif target == "pipeline":
        if repeats < 0:
            _fail("--repeats must be ≥ 0")
        try:
            secs = [float(x) for x in lengths.split(",") if x.strip()]
        except ValueError:
            _fail(f"--lengths must be numbers, got {lengths!r}")
        try:
            results = b.bench_pipeline(secs, voice=model, encoder=encoder, pitch_model=pitch_model,
                                       f0_method=f0_method, repeats=repeats, audio=audio)
        except (RuntimeError, MlxRvcError, ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
    elif target == "precision":
        if seconds <= 0 or repeats < 1:
            _fail("--seconds must be > 0 and --repeats ≥ 1")
        try:
            results = b.bench_precision(seconds=seconds, repeats=repeats)
        except RuntimeError as exc:
            _fail(str(exc))
    elif target == "synth":
        if seconds <= 0 or repeats < 1:
            _fail("--seconds must be > 0 and --repeats ≥ 1")
        try:
            results = [b.bench_synth(version=version, sample_rate=rate, f0=not no_f0, seconds=seconds,
                                     repeats=repeats)]
        except ValueError as exc:
            _fail(str(exc))
    elif target == "pitch":
        from .pitch_bench import cli_run

        try:
            cli_run(methods=methods, save_clips=save_clips, reference=reference, estimates=estimates, json_out=json_out)
        except (MlxRvcError, ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
        return
    else:
        _fail(f"unknown benchmark {target!r} (pipeline, synth, precision, pitch or blas)")
    if as_json:
        print(b.to_json(results))
        return
    console.print(b.system_line(), highlight=False)
    for r in results:
        line = f"{r.name}: best {r.best:.3f} s of {len(r.seconds)}"
        if r.realtime_factor is not None:
            line += f", {r.realtime_factor:.3f} s per second of audio"
        if r.peak_mlx_bytes:
            line += (f", MLX peak {r.peak_mlx_bytes / 2**30:.2f} GiB (device memory on a GPU), "
                     f"process peak {r.peak_rss_bytes / 2**30:.2f} GiB")
        console.print(line)
        for k, v in r.extra.items():
            if isinstance(v, dict):
                v = ", ".join(f"{sk} {sv:.2f}" for sk, sv in v.items())
            console.print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")


@app.command()
def demo(
    out: Path = typer.Option(Path("mlx-rvc-demo"), "--out", help="directory for the demo's output"),
    seed: int = typer.Option(0, "--seed", help="seed of the random models and draws"),
) -> None:
    """Convert a bundled speech clip end to end with untrained models (nothing is downloaded)."""
    from .backend import BLAS
    from .demo import run_demo

    console.print("Building an [bold]untrained[/] voice (RVC v1 40 kHz, full size) and a small untrained "
                  "content encoder.\nThey are random: the result is a buzz that follows the speech's pitch "
                  "and rhythm, not a voice.")
    try:
        result = run_demo(out, seed=seed)
    except (MlxRvcError, OSError, ValueError) as exc:
        _fail(_one_line(exc))
    table = Table("stage", "seconds", box=None)
    for stage, secs in result.timings.items():
        table.add_row(stage, f"{secs:.2f}")
    console.print(table)
    work = sum(v for k, v in result.timings.items() if k not in ("build models", "write"))
    console.print(f"{result.input_seconds:.1f} s of speech converted in {work:.1f} s "
                  f"({work / result.input_seconds:.2f} s per second of audio; BLAS: {BLAS.name})")
    console.print(f"wrote {result.output} and {result.picture}")


def _stream_settings(preset: str, block: Optional[float], crossfade: Optional[float], extra: Optional[float],
                     lookahead: Optional[float]):
    from .stream import PRESETS

    if preset not in PRESETS:
        _fail(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[preset]
    changes = {k: v for k, v in (("block", block), ("crossfade", crossfade), ("extra", extra),
                                 ("lookahead", lookahead)) if v is not None}
    from dataclasses import replace

    settings = replace(base, **changes)
    try:
        settings.check()
    except MlxRvcError as exc:
        _fail(str(exc))
    return settings


def _live_options(pitch, f0_method, index, index_rate, protect, rms_mix_rate, filter_radius, unvoiced, resample_sr,
                  speaker, seed):
    from .options import ConversionOptions

    try:
        return ConversionOptions(pitch=pitch, f0_method=f0_method, index_path=index, index_rate=index_rate,
                                 protect=protect, rms_mix_rate=rms_mix_rate, filter_radius=filter_radius,
                                 unvoiced=unvoiced, resample_sr=resample_sr, speaker=speaker, seed=seed)
    except ValueError as exc:
        _fail(str(exc))


_PRESET_HELP = "timing preset: reference (0.25 s blocks, 0.05 s crossfade, 2.5 s context) or low-latency"


@app.command()
def stream(
    input: Path = typer.Argument(..., help="audio file to feed through the streaming converter"),
    output: Path = typer.Argument(..., help="converted audio file (written atomically)"),
    model: str = typer.Option(..., "-m", "--model", help="voice: library name or imported directory"),
    preset: str = typer.Option("reference", "--preset", help=_PRESET_HELP),
    block: Optional[float] = typer.Option(None, "--block", help="seconds converted per step (overrides the preset)"),
    crossfade: Optional[float] = typer.Option(None, "--crossfade", help="seconds of crossfade at joins (≤ 0.04 used)"),
    extra: Optional[float] = typer.Option(None, "--extra", help="seconds of past context"),
    lookahead: Optional[float] = typer.Option(None, "--lookahead", help="seconds of future context (adds latency)"),
    realtime: bool = typer.Option(False, "--realtime", help="feed at real-time pace; count late and dropped blocks"),
    pitch: int = typer.Option(0, "--pitch", help="transpose in semitones (-24..24)"),
    f0_method: str = typer.Option("rmvpe", "--f0-method", help="rmvpe, pm, harvest, dio, fcpe, crepe or crepe-tiny"),
    index: Optional[Path] = typer.Option(None, "--index", help="retrieval .index (default: the voice's own)"),
    index_rate: float = typer.Option(0.75, "--index-rate", help="0..1: weight of retrieved features"),
    protect: float = typer.Option(0.33, "--protect", help="0..0.5: keep input features on unvoiced frames"),
    rms_mix_rate: float = typer.Option(0.25, "--rms-mix-rate", help="0..1: 1 keeps the voice's loudness"),
    filter_radius: int = typer.Option(3, "--filter-radius", help="0..7: median filter for harvest/dio pitch"),
    unvoiced: str = typer.Option("interpolate", "--unvoiced", help="interpolate or keep"),
    resample_sr: int = typer.Option(0, "--resample-sr", help="output rate in Hz (0 = the voice's)"),
    speaker: int = typer.Option(0, "--speaker", help="speaker id of multi-speaker voices"),
    seed: int = typer.Option(0, "--seed", help="seed of the random draws"),
    bit_depth: int = typer.Option(16, "--bit-depth", help="16, 24 or 32 (float)"),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="content encoder (default: the library's)"),
    pitch_model: Optional[str] = typer.Option(None, "--pitch-model", help="RMVPE model (default: the library's)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing OUTPUT file"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Convert a file through the real-time path, block by block, and report whether it keeps up."""
    from .audio import SUBTYPES, load_audio, write_audio
    from .pipeline import VoiceConverter
    from .stream import StreamingConverter, reference_latency_formula, stream_audio

    settings = _stream_settings(preset, block, crossfade, extra, lookahead)
    options = _live_options(pitch, f0_method, index, index_rate, protect, rms_mix_rate, filter_radius, unvoiced,
                            resample_sr, speaker, seed)
    subtype = {v: k for k, v in SUBTYPES.items()}.get(bit_depth)
    if subtype is None:
        _fail(f"--bit-depth must be one of {sorted(SUBTYPES.values())}, got {bit_depth}")
    from .safety import check_not_input, check_target

    try:
        check_not_input(output, [input])
        check_target(output, overwrite=overwrite)  # before the work, not after it
    except MlxRvcError as exc:
        _fail(str(exc))
    try:
        audio, sr = load_audio(input)
        converter = VoiceConverter(model, encoder=encoder, pitch_model=pitch_model, keep_models=True)
        streamer = StreamingConverter(converter, options, settings=settings, input_rate=sr)
        y, report = stream_audio(streamer, audio, realtime=realtime)
        write_audio(output, y, streamer.output_rate, subtype=subtype, overwrite=overwrite, inputs=[input])
    except (MlxRvcError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    result = {"input": str(input), "output": str(output), "voice": converter.voice.name,
              "settings": {"block": settings.block, "crossfade": settings.crossfade, "extra": settings.extra,
                           "lookahead": settings.lookahead},
              "reference_latency_formula_seconds": reference_latency_formula(settings), **report.as_dict()}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    d = report.as_dict()
    if "compute_seconds" in d:
        c, r = d["compute_seconds"], d["realtime_factor"]
        console.print(f"{d['blocks']} blocks of {settings.block:g} s: compute min {c['min'] * 1000:.0f} / median "
                      f"{c['median'] * 1000:.0f} / p95 {c['p95'] * 1000:.0f} / max {c['max'] * 1000:.0f} ms; "
                      f"real-time factor p95 {r['p95']:.2f} ({'keeps up' if d['keeps_up'] else 'does not keep up'})")
    console.print(f"latency {report.latency['total'] * 1000:.0f} ms (block {report.latency['block'] * 1000:.0f}, "
                  f"crossfade {report.latency['crossfade'] * 1000:.0f}, search {report.latency['sola_search'] * 1000:.0f}, "
                  f"lookahead {report.latency['lookahead'] * 1000:.0f}, resampling "
                  f"{report.latency['resampling'] * 1000:.1f}) + compute; late blocks {report.late}, dropped {report.dropped}")
    console.print(f"wrote {_escape(str(output))}", highlight=False)


@app.command()
def live(
    model: Optional[str] = typer.Option(None, "-m", "--model", help="voice: library name or imported directory"),
    input_device: Optional[str] = typer.Option(None, "--input", help="input device (index or name; default: the system's)"),
    output_device: Optional[str] = typer.Option(None, "--output", help="output device (index or name)"),
    to: Optional[Path] = typer.Option(None, "--to", help="write the converted audio to this file instead of playing it"),
    list_devices: bool = typer.Option(False, "--list-devices", help="list the audio devices and exit"),
    preset: str = typer.Option("reference", "--preset", help=_PRESET_HELP),
    block: Optional[float] = typer.Option(None, "--block", help="seconds converted per step (overrides the preset)"),
    crossfade: Optional[float] = typer.Option(None, "--crossfade", help="seconds of crossfade at joins (≤ 0.04 used)"),
    extra: Optional[float] = typer.Option(None, "--extra", help="seconds of past context"),
    lookahead: Optional[float] = typer.Option(None, "--lookahead", help="seconds of future context (adds latency)"),
    pitch: int = typer.Option(0, "--pitch", help="transpose in semitones (-24..24)"),
    f0_method: str = typer.Option("rmvpe", "--f0-method", help="rmvpe, pm, harvest, dio, fcpe, crepe or crepe-tiny"),
    index: Optional[Path] = typer.Option(None, "--index", help="retrieval .index (default: the voice's own)"),
    index_rate: float = typer.Option(0.75, "--index-rate", help="0..1: weight of retrieved features"),
    protect: float = typer.Option(0.33, "--protect", help="0..0.5: keep input features on unvoiced frames"),
    rms_mix_rate: float = typer.Option(0.25, "--rms-mix-rate", help="0..1: 1 keeps the voice's loudness"),
    filter_radius: int = typer.Option(3, "--filter-radius", help="0..7: median filter for harvest/dio pitch"),
    unvoiced: str = typer.Option("interpolate", "--unvoiced", help="interpolate or keep"),
    speaker: int = typer.Option(0, "--speaker", help="speaker id of multi-speaker voices"),
    seed: int = typer.Option(0, "--seed", help="seed of the random draws"),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="content encoder (default: the library's)"),
    pitch_model: Optional[str] = typer.Option(None, "--pitch-model", help="RMVPE model (default: the library's)"),
) -> None:
    """Convert the microphone live, to the speakers or a file; Ctrl-C stops. Needs the `live` extra."""
    import os

    from . import stream as st

    if list_devices:
        try:
            devices = st.list_devices()
        except MlxRvcError as exc:
            _fail(str(exc))
        table = Table("index", "name", "in", "out", "rate")
        for d in devices:
            table.add_row(str(d["index"]), d["name"], str(d["inputs"]), str(d["outputs"]), str(d["default_rate"]))
        console.print(table if devices else "no audio devices")
        return
    if model is None:
        _fail("give a voice with -m/--model (or --list-devices)")
    settings = _stream_settings(preset, block, crossfade, extra, lookahead)
    options = _live_options(pitch, f0_method, index, index_rate, protect, rms_mix_rate, filter_radius, unvoiced, 0,
                            speaker, seed)
    if to is not None and os.path.lexists(to):
        _fail(f"{to} exists; live output never replaces a file")
    state = {}

    def streamer_for(input_rate: int, output_rate):
        from .pipeline import VoiceConverter

        converter = VoiceConverter(model, encoder=encoder, pitch_model=pitch_model, keep_models=True)
        streamer = st.StreamingConverter(converter, options, settings=settings, input_rate=input_rate,
                                         output_rate=output_rate)
        state["latency"] = streamer.latency["total"]
        err_console.print(f"converting live into {converter.voice.name}: {settings.block:g} s blocks, "
                          f"algorithmic latency {state['latency'] * 1000:.0f} ms; Ctrl-C stops")
        return streamer

    def show(s) -> None:
        bar = "#" * int(max(0.0, min(1.0, (s.level_db + 60) / 60)) * 20)
        err_console.print(f"\rlevel {s.level_db:6.1f} dB [{bar:<20}] load {s.load:4.2f} blocks {s.blocks} "
                          f"underruns {s.underruns} dropped {s.dropped}  ", end="", highlight=False)

    try:
        final = st.run_live(streamer_for, input_device=input_device, output_device=output_device, to_file=to,
                            on_status=show)
    except (MlxRvcError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    err_console.print(f"\nstopped after {final.blocks} blocks ({final.underruns} underruns, {final.dropped} dropped)"
                      + (f"; wrote {_escape(str(to))}" if to else ""))


def _print_report(report) -> None:
    table = Table(title=f"{report.fixture} ({report.kind}, {report.seconds:.2f} s)")
    for col in ("key", "max |diff|", "rms diff", "rel rms", "corr", "spec corr", "rms ratio", "ok"):
        table.add_column(col, justify="right" if col != "key" else "left")
    for c in report.checks:
        d = c.diff
        row = [c.key]
        row += [f"{d.max_abs:.3g}", f"{d.rms:.3g}", f"{d.rel_rms:.3g}", f"{d.corr:.7f}"] if d else ["-"] * 4
        row += [f"{c.audio.spec_corr:.6f}", f"{c.audio.rms_ratio:.5f}"] if c.audio else ["", ""]
        row.append("[green]ok[/]" if c.passed else f"[red]FAIL[/] {c.note}")
        table.add_row(*row)
    console.print(table)
    console.print(f"[bold]{'PASS' if report.passed else 'FAIL'}[/] {report.fixture}")


def main() -> None:
    from .safety import Terminated, install_signal_handlers, remove_temporaries

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    install_signal_handlers()  # SIGTERM/SIGHUP unwind like Ctrl-C, so temporary files are removed
    try:
        app()
    except KeyboardInterrupt:
        remove_temporaries()
        err_console.print("interrupted")
        sys.exit(130)
    except Terminated as exc:
        remove_temporaries()
        err_console.print("terminated")
        sys.exit(128 + exc.signum)


if __name__ == "__main__":
    main()
