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
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


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
) -> None:
    """Import a checkpoint safely (no pickled code runs) into an MLX model directory."""
    from .importer import import_model

    if name is not None and out is not None:
        _fail("give --name or --out, not both")
    try:
        result = import_model(source, out=out, name=name, dtype=dtype, index=index)
    except (MlxRvcError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
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
    f0_method: str = typer.Option("rmvpe", "--f0-method", help="rmvpe, pm, harvest, dio, fcpe, crepe or crepe-tiny"),
    index: Optional[Path] = typer.Option(None, "--index", help="retrieval .index (default: the voice's own)"),
    index_rate: float = typer.Option(0.75, "--index-rate", help="0..1: weight of retrieved features"),
    protect: float = typer.Option(0.33, "--protect", help="0..0.5: keep input features on unvoiced frames"),
    rms_mix_rate: float = typer.Option(0.25, "--rms-mix-rate", help="0..1: 1 keeps the voice's loudness"),
    filter_radius: int = typer.Option(3, "--filter-radius", help="0..7: median filter for harvest/dio pitch"),
    unvoiced: str = typer.Option("interpolate", "--unvoiced", help="interpolate (2026 reference) or keep (classic)"),
    f0_file: Optional[Path] = typer.Option(None, "--f0-file", help="CSV of seconds,Hz replacing the tracked pitch"),
    resample_sr: int = typer.Option(0, "--resample-sr", help="output rate in Hz (0 = the voice's)"),
    speaker: int = typer.Option(0, "--speaker", help="speaker id of multi-speaker voices"),
    seed: int = typer.Option(0, "--seed", help="seed of the random draws"),
    fmt: str = typer.Option("wav", "--format", help="wav, flac, ogg or mp3"),
    bit_depth: int = typer.Option(16, "--bit-depth", help="16, 24 or 32 (float)"),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="content encoder (default: the library's)"),
    pitch_model: Optional[str] = typer.Option(None, "--pitch-model", help="RMVPE model (default: the library's)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary"),
) -> None:
    """Convert audio files into a voice. Exit status: 0 all converted, 1 some failed, 2 nothing could start."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .batch import convert_files, find_inputs
    from .options import ConversionOptions
    from .pipeline import VoiceConverter

    try:
        options = ConversionOptions(
            pitch=pitch, f0_method=f0_method, index_path=index, index_rate=index_rate, protect=protect,
            rms_mix_rate=rms_mix_rate, filter_radius=filter_radius, unvoiced=unvoiced, f0_file=f0_file,
            resample_sr=resample_sr, speaker=speaker, seed=seed, output_format=fmt, bit_depth=bit_depth)
        files = find_inputs(inputs)
        if not files:
            _fail("no audio files found in the inputs")
        roots = {f: p for p in inputs if p.is_dir() for f in files if f.is_relative_to(p)}
        converter = VoiceConverter(model, encoder=encoder, pitch_model=pitch_model)
    except (MlxRvcError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=err_console, disable=as_json) as bar:
        files_task = bar.add_task("files", total=len(files))
        step = bar.add_task("", total=1.0)

        def on_file(i: int, path: Path) -> None:
            bar.update(files_task, completed=i, description=f"file {i + 1}/{len(files)}: {path.name}")
            bar.reset(step)

        def on_progress(stage: str, fraction: float) -> None:
            bar.update(step, completed=fraction, description=f"  {stage}")

        results = convert_files(converter, files, options, out=out, roots=roots, on_file=on_file,
                                progress=on_progress)
        bar.update(files_task, completed=len(files))
    if as_json:
        print(json.dumps({"voice": converter.voice.name, "options": options.as_dict(),
                          "files": [r.as_dict() for r in results]}, indent=2))
    else:
        for r in results:
            if r.ok:
                speed = r.seconds / r.audio_seconds if r.audio_seconds else 0
                console.print(f"[green]ok[/] {r.input} -> {r.output} ({r.seconds:.1f} s, {speed:.2f} s per s of audio)")
            else:
                console.print(f"[red]failed[/] {r.input}: {r.error}")
    raise typer.Exit(0 if all(r.ok for r in results) else 1)


@app.command()
def f0(
    input: Path = typer.Argument(..., help="audio file"),
    method: str = typer.Option("rmvpe", "--method", help="rmvpe, pm, harvest, dio, fcpe, crepe or crepe-tiny"),
    pitch: int = typer.Option(0, "--pitch", help="shift in semitones"),
    unvoiced: str = typer.Option("keep", "--unvoiced", help="keep (0 Hz) or interpolate unvoiced frames"),
    filter_radius: int = typer.Option(3, "--filter-radius", help="≥3 median-filters harvest/dio"),
    pitch_model: Optional[str] = typer.Option(None, "--pitch-model", help="RMVPE model (default: the library's)"),
    out: Optional[Path] = typer.Option(None, "--out", help="write seconds,Hz CSV here"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="write waveform/spectrogram with the f0 curve"),
) -> None:
    """Track the pitch of a recording: a CSV contour and a picture."""
    import numpy as np

    from . import pitch as pitch_mod
    from .audio import load_audio
    from .pipeline import prepare_input

    try:
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
    except (MlxRvcError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    times = np.arange(len(hz)) * 0.01
    voiced = hz > 0
    if out is not None:
        import os
        import tempfile

        fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", suffix=".csv")
        with os.fdopen(fd, "w") as fh:
            fh.write("seconds,hz\n")
            fh.writelines(f"{t:.2f},{f:.3f}\n" for t, f in zip(times, hz))
        os.replace(tmp, out)
    if plot is not None:
        from .plots import comparison_figure, save_figure

        save_figure(comparison_figure([(input.name, audio, sr)], f0=[hz]), plot)
    median = float(np.median(hz[voiced])) if voiced.any() else 0.0
    console.print(f"{input.name}: {len(hz)} frames, {voiced.mean():.0%} voiced, median {median:.1f} Hz"
                  + (f", wrote {out}" if out else "") + (f", {plot}" if plot else ""))


@app.command()
def compare(
    a: Path = typer.Argument(..., help="first audio file (the reference)"),
    b: Path = typer.Argument(..., help="second audio file"),
    png: Optional[Path] = typer.Option(None, "--png", help="write waveforms and spectrograms side by side"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Compare two audio files: spectrogram and waveform correlation, RMS ratio, and a picture."""
    import numpy as np

    from .audio import load_audio, resample
    from .metrics import audio_diff

    try:
        xa, sra = load_audio(a)
        xb, srb = load_audio(b)
    except (MlxRvcError, FileNotFoundError) as exc:
        _fail(str(exc))
    for path, x in ((a, xa), (b, xb)):
        if not np.all(np.isfinite(x)):
            _fail(f"{path.name}: contains NaN or infinite samples")
    xb_at_a = resample(xb, orig_sr=srb, target_sr=sra)
    diff = audio_diff(xb_at_a, xa)
    report = {"a": str(a), "b": str(b), "sample_rate_a": sra, "sample_rate_b": srb,
              "seconds_a": len(xa) / sra, "seconds_b": len(xb) / srb, **diff.as_dict()}
    if png is not None:
        from .plots import comparison_figure, save_figure

        save_figure(comparison_figure([(a.name, xa, sra), (b.name, xb, srb)]), png)
        report["png"] = str(png)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for k, v in report.items():
        console.print(f"{k:>14}: {v:.6g}" if isinstance(v, float) else f"{k:>14}: {v}")


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the imported voices, content encoders and pitch models."""
    from .importer import home
    from .store import list_models

    models = list_models()
    if as_json:
        print(json.dumps([{"name": m.name, "kind": m.kind, "path": str(m.path), "summary": m.summary()}
                          for m in models], indent=2))
        return
    if not models:
        console.print(f"no models in {home()}; import one with `mlx-rvc import`")
        return
    table = Table("name", "kind", "details", "path")
    for m in models:
        table.add_row(m.name, m.kind, m.summary(), str(m.path))
    console.print(table)


@app.command()
def remove(
    name: str = typer.Argument(..., help="library name"),
    kind: str = typer.Option("rvc_voice", "--kind", help="rvc_voice, hubert, rmvpe, fcpe or crepe"),
) -> None:
    """Delete a model from the library."""
    from .store import remove as remove_model

    try:
        path = remove_model(name, kind)
    except (MlxRvcError, KeyError) as exc:
        _fail(str(exc))
    console.print(f"removed {path}")


@app.command()
def bench(
    target: str = typer.Argument("pipeline", help="pipeline (whole conversion), synth (synthesizer only), blas or pitch (f0 accuracy)"),
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
        _fail(f"unknown benchmark {target!r} (pipeline, synth, blas or pitch)")
    if as_json:
        print(b.to_json(results))
        return
    for r in results:
        line = f"{r.name}: best {r.best:.3f} s of {len(r.seconds)}"
        if r.realtime_factor is not None:
            line += f", {r.realtime_factor:.3f} s per second of audio"
        if r.peak_mlx_bytes:
            line += f", MLX peak {r.peak_mlx_bytes / 2**30:.2f} GiB, process peak {r.peak_rss_bytes / 2**30:.2f} GiB"
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
    result = run_demo(out, seed=seed)
    table = Table("stage", "seconds", box=None)
    for stage, secs in result.timings.items():
        table.add_row(stage, f"{secs:.2f}")
    console.print(table)
    work = sum(v for k, v in result.timings.items() if k not in ("build models", "write"))
    console.print(f"{result.input_seconds:.1f} s of speech converted in {work:.1f} s "
                  f"({work / result.input_seconds:.2f} s per second of audio; BLAS: {BLAS.name})")
    console.print(f"wrote {result.output} and {result.picture}")


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
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
