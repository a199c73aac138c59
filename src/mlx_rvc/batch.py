"""Converting files and folders: input discovery, output naming, atomic writes, per-file results."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import MlxRvcError
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
    """Where a converted file goes (before collisions between inputs are resolved).

    One input and ``out`` with an audio suffix that is not an existing folder: exactly ``out``.
    Otherwise ``out`` (default ``./converted``) is a folder, inputs found under a folder keep their
    relative sub-path, and the name is ``<stem>.<voice>.<format>``.
    """
    if single and out is not None and out.suffix.lower() in AUDIO_SUFFIXES and not out.is_dir():
        return out
    folder = out if out is not None else Path("converted")
    rel = inp.parent.relative_to(root) if root is not None and inp.is_relative_to(root) else Path()
    return folder / rel / f"{inp.stem}.{voice_name}.{fmt}"


def output_paths(inputs: list[Path], *, voice_name: str, out: Path | None, fmt: str,
                 roots: dict[Path, Path] | None = None) -> list[Path]:
    """:func:`output_path` of every input, made distinct: inputs that would land on the same name
    (``x.wav`` and ``x.flac``) keep their own suffix in it (``x_wav.<voice>.wav``, ``x_flac…``),
    and any that still collide get a number (``x.<voice>.2.wav``)."""
    import os

    single = len(inputs) == 1
    targets = [output_path(p, voice_name=voice_name, out=out, fmt=fmt, single=single, root=(roots or {}).get(p))
               for p in inputs]

    def key(p: Path) -> str:
        return os.path.normcase(os.path.abspath(p))

    groups: dict[str, list[int]] = {}
    for i, t in enumerate(targets):
        groups.setdefault(key(t), []).append(i)
    for members in groups.values():
        if len(members) > 1:
            for i in members:
                suffix = inputs[i].suffix.lstrip(".").lower() or "audio"
                targets[i] = targets[i].with_name(f"{inputs[i].stem}_{suffix}.{voice_name}.{fmt}")
    seen: set[str] = set()
    for i, t in enumerate(targets):
        n = 1
        while key(targets[i]) in seen:
            n += 1
            targets[i] = t.with_name(f"{t.stem}.{n}{t.suffix}")
        seen.add(key(targets[i]))
    return targets


def format_rate(fmt: str, rate: int) -> tuple[int, str | None]:
    """The rate to write ``fmt`` at: ``rate`` if the format holds it, else the nearest one it holds
    (mp3 only has the MPEG rates), with a sentence saying so."""
    from .audio import MP3_RATES

    if fmt == "mp3" and rate not in MP3_RATES:
        near = min(MP3_RATES, key=lambda r: (abs(r - rate), -r))
        return near, f"mp3 cannot hold {rate} Hz: resampled to {near} Hz"
    return rate, None


@dataclass
class FileResult:
    input: Path
    output: Path | None
    status: str  # "converted", "skipped" (the output exists; --overwrite replaces it) or "failed"
    error: str | None = None  # why it failed or was skipped (one line)
    seconds: float = 0.0
    audio_seconds: float = 0.0
    timings: dict | None = None
    note: str | None = None  # e.g. a format's rate change

    @property
    def ok(self) -> bool:
        return self.status == "converted"

    def as_dict(self) -> dict:
        return {"input": str(self.input), "output": str(self.output) if self.output else None, "status": self.status,
                "ok": self.ok, "error": self.error, "note": self.note, "seconds": round(self.seconds, 3),
                "audio_seconds": round(self.audio_seconds, 3),
                "timings": {k: round(v, 3) for k, v in (self.timings or {}).items()}}


def summary(results: list[FileResult]) -> dict[str, int]:
    return {s: sum(r.status == s for r in results) for s in ("converted", "skipped", "failed")}


def one_line(exc: BaseException) -> str:
    """An exception as one line; errors that are not the project's own keep their type's name."""
    from .errors import MlxRvcError

    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, (MlxRvcError, FileNotFoundError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def convert_files(converter, inputs: list[Path], options: ConversionOptions, *, out: Path | None,
                  roots: dict[Path, Path] | None = None, overwrite: bool = False,
                  on_file: Callable[[int, Path], None] | None = None,
                  progress: Callable[[str, float], None] | None = None) -> list[FileResult]:
    """Convert each input; every file is tried, a failure is recorded and the batch goes on.

    An existing output is skipped unless ``overwrite``; no output is ever one of the inputs. A
    format that cannot hold the output rate (mp3 and 40 kHz) is resampled to the nearest rate it
    holds, and the result's ``note`` says so.
    """
    import logging

    from .safety import OutputExistsError, check_not_input, check_target

    rate, note = format_rate(options.output_format, converter.output_rate(options))
    if note is not None:
        options = options.with_(resample_sr=rate)
    targets = output_paths(inputs, voice_name=converter.voice.name, out=out, fmt=options.output_format, roots=roots)
    results = []
    for i, (inp, target) in enumerate(zip(inputs, targets)):
        if on_file:
            on_file(i, inp)
        t0 = time.perf_counter()
        try:
            check_not_input(target, inputs)
            check_target(target, overwrite=overwrite)
        except OutputExistsError as exc:
            results.append(FileResult(inp, target, "skipped", error=one_line(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a refusal of this file only
            results.append(FileResult(inp, None, "failed", error=one_line(exc)))
            continue
        try:
            done = converter.convert_file(inp, target, options, subtype=subtype_for(options), progress=progress)
            results.append(FileResult(inp, target, "converted", seconds=time.perf_counter() - t0,
                                      audio_seconds=done.input_seconds, timings=done.timings, note=note))
        except Exception as exc:  # noqa: BLE001 - one file's failure must not end the batch
            logging.getLogger(__name__).debug("converting %s failed", inp, exc_info=True)
            results.append(FileResult(inp, None, "failed", error=one_line(exc), seconds=time.perf_counter() - t0))
    return results


class OptionError(MlxRvcError, ValueError):
    """An option that cannot work, found before any model is loaded; the message names the option."""


FIELD_OPTIONS = {  # ConversionOptions field -> the command-line option that sets it
    "pitch": "--pitch", "f0_method": "--f0-method", "index_rate": "--index-rate", "protect": "--protect",
    "rms_mix_rate": "--rms-mix-rate", "filter_radius": "--filter-radius", "unvoiced": "--unvoiced",
    "resample_sr": "--resample-sr", "speaker": "--speaker", "seed": "--seed", "index_path": "--index",
    "f0_file": "--f0-file", "output_format": "--format", "bit_depth": "--bit-depth",
}


def options_error(exc: ValueError, names: dict[str, str] = FIELD_OPTIONS) -> OptionError:
    """A ConversionOptions refusal ("pitch must be…") as one naming the option ("--pitch must be…")."""
    text = str(exc)
    for field, option in sorted(names.items(), key=lambda kv: -len(kv[0])):
        if text.startswith(field + " "):
            return OptionError(option + text[len(field):])
    return OptionError(text)


def check_f0_file(path: Path, *, option: str = "--f0-file") -> None:
    """Refuse an f0 curve that cannot be read, or has negative times or frequencies, in one line."""
    import numpy as np

    from .pitch import read_f0_file

    try:
        table = read_f0_file(path)
    except (MlxRvcError, OSError, ValueError) as exc:
        raise OptionError(f"{option}: {one_line(exc)}") from exc
    if table[0, 0] < 0:
        raise OptionError(f"{option} {path.name}: negative time {table[0, 0]:g} s; times are seconds from the start")
    if np.any(table[:, 1] < 0):
        raise OptionError(f"{option} {path.name}: negative frequency {table[:, 1].min():g} Hz")


def preflight(voice, options: ConversionOptions, *, encoder=None, pitch_model=None,
              f0_method_given: bool = True) -> list[str]:
    """Everything about a conversion that can be checked without loading a model.

    Resolves the voice (refusing damaged entries), checks the speaker id, the seed, the f0 method,
    that a content encoder fitting the voice and (where needed) a pitch model exist, the index and
    f0 files. Raises OptionError (or the library's one-line errors); returns warnings, e.g. pitch
    options given for a voice without pitch (they are ignored, not refused: the conversion is
    still well defined).
    """
    from . import artifact, store
    from .pitch import METHODS

    warnings: list[str] = []
    if options.f0_method not in METHODS:
        raise OptionError(f"--f0-method: unknown method {options.f0_method!r}; choose one of {', '.join(METHODS)}")
    if options.seed < 0:
        raise OptionError(f"--seed must be ≥ 0, got {options.seed}")
    if options.index_path is not None and not options.index_path.is_file():
        raise OptionError(f"--index: file not found: {options.index_path}")
    if options.f0_file is not None:
        check_f0_file(options.f0_file)
    voice_path = store.resolve(voice, "rvc_voice") if not isinstance(voice, store.Voice) else voice.path
    config = artifact.read_config(voice_path)
    name = voice_path.name
    speakers = int(config.get("spk_embed_dim") or 1)
    if options.speaker >= speakers:
        raise OptionError(f"--speaker {options.speaker}: voice {name!r} has {speakers} speaker(s) (0..{speakers - 1})")
    version = config.get("version", "v2")
    if not config.get("f0", True):
        ignored = [o for o, on in (("--f0-method", f0_method_given), ("--pitch", options.pitch != 0),
                                   ("--f0-file", options.f0_file is not None)) if on]
        if ignored:
            warnings.append(f"voice {name!r} has no pitch input (no-f0): {', '.join(ignored)} ignored")
    elif options.f0_method == "rmvpe":
        try:
            store.resolve(pitch_model, "rmvpe")
        except MlxRvcError as exc:
            raise OptionError(f"--pitch-model: {one_line(exc)}" if pitch_model is not None else
                              f"{one_line(exc)} (needed by --f0-method rmvpe; pm, harvest and dio need none)") from exc
    need = "256-d (final_proj)" if version == "v1" else "768-d"
    if encoder is not None:
        try:
            enc_path = store.resolve(encoder, "hubert")
        except MlxRvcError as exc:
            raise OptionError(f"--encoder: {one_line(exc)}") from exc
        if not store.encoder_serves(artifact.read_config(enc_path), version):
            raise OptionError(f"--encoder {enc_path.name}: does not make the {need} features a {version} voice needs")
    elif not [m for m in store.list_models("hubert") if store.encoder_serves(m.config, version)]:
        raise OptionError(f"no content encoder in the library makes the {need} features voice {name!r} "
                          f"({version}) needs; import one (hubert_base.pt) or give --encoder")
    return warnings
