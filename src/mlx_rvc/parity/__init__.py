"""``mlx-rvc parity``: run a golden fixture of the PyTorch reference through the MLX port.

A fixture is an ``.npz`` of inputs, intermediates and outputs, with a ``fixtures.json`` beside
it (format: the fixtures' README) that names the producer, the model files (paths relative to
that directory) and the recorded random draws. Each fixture kind has a runner module in this
package (``synth``, ``hubert``, ``rmvpe``, ``e2e``) exposing

    run(fixture: Fixture) -> dict[str, numpy.ndarray]       # produced arrays, fixture key names
    TOLERANCES: dict[str, Tolerance]                         # per key (fnmatch patterns allowed)

and this module compares every produced array that the fixture also holds.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FixtureError
from ..metrics import ArrayDiff, AudioDiff, array_diff, audio_diff

RUNNERS = {  # fixture file-name prefix -> runner module
    "synth_": "mlx_rvc.parity.synth",
    "hubert": "mlx_rvc.parity.hubert",
    "rmvpe": "mlx_rvc.parity.rmvpe",
    "e2e_": "mlx_rvc.parity.e2e",
}


@dataclass(frozen=True)
class Tolerance:
    """Pass bars for one produced array (``None`` = not checked)."""

    rel_rms: float | None = None  # max RMS(a − ref) / RMS(ref)
    max_abs: float | None = None  # max |a − ref|
    corr: float | None = None  # min Pearson correlation
    spec_corr: float | None = None  # audio only: min spectrogram correlation
    rms_ratio: tuple[float, float] | None = None  # audio only: allowed RMS(a)/RMS(ref) range
    exact: bool = False  # integer outputs: must be identical
    audio: bool = False  # also compute waveform metrics


@dataclass
class Fixture:
    """A fixture file with its ``fixtures.json`` entry."""

    path: Path
    name: str
    entry: dict[str, Any]
    meta: dict[str, Any]  # the whole fixtures.json minus the per-fixture entries
    arrays: dict[str, np.ndarray]

    @property
    def root(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        """A model path from the fixture's entry, relative to the fixtures directory."""
        p = (self.root / relative).resolve()
        if not p.exists():
            raise FixtureError(f"{self.name}: model {relative} not found beside the fixture ({p})")
        return p

    def draws(self) -> dict[str, np.ndarray]:
        """Recorded random draws by role (``z_p_noise``, ``sine_noise``…), in recorded order."""
        out: dict[str, np.ndarray] = {}
        for d in self.entry.get("random_draws", []):
            if d.get("key"):
                out[d["key"]] = self.arrays[d["key"]]
        return out

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.arrays:
            raise FixtureError(f"{self.name}: fixture has no array {key!r}")
        return self.arrays[key]


def load_fixture(path: str | Path) -> Fixture:
    path = Path(path)
    if not path.is_file():
        raise FixtureError(f"fixture not found: {path}")
    index = path.parent / "fixtures.json"
    if not index.is_file():
        raise FixtureError(f"{path.name}: no fixtures.json beside it to say how it was made")
    meta = json.loads(index.read_text())
    entry = meta.get("fixtures", {}).get(path.name)
    if entry is None:
        raise FixtureError(f"{path.name}: not listed in {index}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise FixtureError(f"{path.name}: unreadable npz ({exc})") from exc
    rest = {k: v for k, v in meta.items() if k != "fixtures"}
    return Fixture(path, path.name, entry, rest, arrays)


@dataclass
class Check:
    key: str
    passed: bool
    diff: ArrayDiff | None = None
    audio: AudioDiff | None = None
    tolerance: Tolerance | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "passed": self.passed}
        if self.diff:
            out.update(self.diff.as_dict())
        if self.audio:
            out["audio"] = self.audio.as_dict()
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class ParityReport:
    fixture: str
    kind: str
    checks: list[Check] = field(default_factory=list)
    produced: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "fixture": self.fixture, "kind": self.kind, "passed": self.passed,
            "seconds": round(self.seconds, 3), "checks": [c.as_dict() for c in self.checks],
        }


def _tolerance_for(key: str, tolerances: dict[str, Tolerance]) -> Tolerance | None:
    if key in tolerances:
        return tolerances[key]
    for pattern, tol in tolerances.items():
        if fnmatch.fnmatchcase(key, pattern):
            return tol
    return None


def compare(key: str, produced: np.ndarray, reference: np.ndarray, tol: Tolerance | None) -> Check:
    """Compare one produced array with its reference under a tolerance."""
    produced = np.asarray(produced)
    reference = np.asarray(reference)
    if produced.size != reference.size:
        return Check(key, False, note=f"shape {produced.shape} vs reference {reference.shape}")
    produced = produced.reshape(reference.shape)
    if tol is not None and tol.exact:
        same = np.array_equal(produced, reference)
        mism = int(np.count_nonzero(produced != reference))
        return Check(key, same, array_diff(produced, reference), tolerance=tol,
                     note="" if same else f"{mism} of {reference.size} values differ")
    d = array_diff(produced, reference)
    a = audio_diff(produced, reference) if tol is not None and tol.audio else None
    ok = all(math.isfinite(v) for v in (d.max_abs, d.rms))
    if tol is not None:
        ok &= tol.rel_rms is None or d.rel_rms <= tol.rel_rms
        ok &= tol.max_abs is None or d.max_abs <= tol.max_abs
        ok &= tol.corr is None or d.corr >= tol.corr
        if a is not None:
            ok &= tol.spec_corr is None or a.spec_corr >= tol.spec_corr
            ok &= tol.rms_ratio is None or tol.rms_ratio[0] <= a.rms_ratio <= tol.rms_ratio[1]
    return Check(key, bool(ok), d, a, tol)


def runner_for(name: str):
    for prefix, module in RUNNERS.items():
        if name.startswith(prefix):
            return importlib.import_module(module)
    raise FixtureError(f"{name}: unknown fixture kind (expected one of {', '.join(RUNNERS)}…)")


def run_parity(path: str | Path) -> ParityReport:
    """Run one fixture through the MLX port and compare every array it holds.

    Raises:
        FixtureError: missing/malformed fixture or model.
    """
    import time

    fixture = load_fixture(path)
    runner = runner_for(fixture.name)
    t0 = time.perf_counter()
    produced = runner.run(fixture)
    report = ParityReport(fixture.name, runner.__name__.rsplit(".", 1)[-1], produced=produced)
    report.seconds = time.perf_counter() - t0
    for key, value in produced.items():
        if key in fixture.arrays:
            report.checks.append(compare(key, value, fixture.arrays[key], _tolerance_for(key, runner.TOLERANCES)))
    if not report.checks:
        raise FixtureError(f"{fixture.name}: nothing produced could be compared")
    return report


def save_produced(report: ParityReport, out: str | Path) -> Path:
    """Write every produced array under the fixture's key names (``np.savez_compressed``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial.npz")
    np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in report.produced.items()})
    tmp.replace(out)
    return out
