"""Converting files and folders: input discovery, output naming, atomic writes, per-file results."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .options import ConversionOptions

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus", ".webm", ".aiff", ".aif",
                  ".wma", ".mp4", ".caf", ".w64"}
SUBTYPE = {  # (format, bit depth) -> soundfile subtype
    ("wav", 16): "PCM_16", ("wav", 24): "PCM_24", ("wav", 32): "FLOAT",
    ("flac", 16): "PCM_16", ("flac", 24): "PCM_24",
}


def subtype_for(options: ConversionOptions) -> str:
    fmt = options.output_format
    if fmt == "ogg":
        return "VORBIS"
    if fmt == "mp3":
        return "MPEG_LAYER_III"
    return SUBTYPE[(fmt, options.bit_depth)]


def find_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for audio files (sorted); missing paths raise."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
                                and not f.name.startswith(".")))
        elif p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return list(dict.fromkeys(found))


def output_path(inp: Path, *, voice_name: str, out: Path | None, fmt: str, single: bool,
                root: Path | None = None) -> Path:
    """Where a converted file goes; never one of the inputs.

    One input and ``out`` with an audio suffix: exactly ``out``. Otherwise ``out`` (default
    ``./converted``) is a folder, inputs found under a folder keep their relative sub-path, and
    the name is ``<stem>.<voice>.<format>``.
    """
    if single and out is not None and out.suffix.lower() in AUDIO_SUFFIXES:
        return out
    folder = out if out is not None else Path("converted")
    rel = inp.parent.relative_to(root) if root is not None and inp.is_relative_to(root) else Path()
    return folder / rel / f"{inp.stem}.{voice_name}.{fmt}"


@dataclass
class FileResult:
    input: Path
    output: Path | None
    ok: bool
    error: str | None = None
    seconds: float = 0.0
    audio_seconds: float = 0.0
    timings: dict | None = None

    def as_dict(self) -> dict:
        return {"input": str(self.input), "output": str(self.output) if self.output else None, "ok": self.ok,
                "error": self.error, "seconds": round(self.seconds, 3), "audio_seconds": round(self.audio_seconds, 3),
                "timings": {k: round(v, 3) for k, v in (self.timings or {}).items()}}


def convert_files(converter, inputs: list[Path], options: ConversionOptions, *, out: Path | None,
                  roots: dict[Path, Path] | None = None,
                  on_file: Callable[[int, Path], None] | None = None,
                  progress: Callable[[str, float], None] | None = None) -> list[FileResult]:
    """Convert each input; a failure is recorded and the batch goes on."""
    from .errors import MlxRvcError

    input_set = {p.resolve() for p in inputs}
    results = []
    for i, inp in enumerate(inputs):
        if on_file:
            on_file(i, inp)
        t0 = time.perf_counter()
        target = output_path(inp, voice_name=converter.voice.name, out=out, fmt=options.output_format,
                             single=len(inputs) == 1, root=(roots or {}).get(inp))
        try:
            if target.resolve() in input_set:
                raise ValueError(f"output {target} would overwrite an input")
            done = converter.convert_file(inp, target, options, subtype=subtype_for(options), progress=progress)
            results.append(FileResult(inp, target, True, seconds=time.perf_counter() - t0,
                                      audio_seconds=done.input_seconds, timings=done.timings))
        except (MlxRvcError, ValueError, OSError) as exc:
            results.append(FileResult(inp, None, False, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                                      seconds=time.perf_counter() - t0))
    return results
