"""Parity runner for RMVPE fixtures (``rmvpe.npz``): log-mel, salience, decoded f0."""

from __future__ import annotations

import numpy as np

from ..dsp.f0 import salience_to_f0
from ..dsp.mel import log_mel
from ..importer import convert, read_source
from ..models import rmvpe
from . import Fixture, Tolerance

TOLERANCES: dict[str, Tolerance] = {
    # float64 FFT vs the reference's float32 one: rounding of the magnitudes, ~1e-7 relative;
    # near the log floor absolute differences in log units stay < 1e-3
    "mel": Tolerance(rel_rms=1e-5, max_abs=1e-3),
    # sigmoid salience after ~50 conv layers and a 2·T-step GRU in float32
    "hidden": Tolerance(rel_rms=1e-4, max_abs=1e-3),
    # f0 derives from the salience near its peak: cents agree to ~1e-3, so Hz to ~1e-4 relative
    "f0": Tolerance(rel_rms=1e-4),
}


def run(fixture: Fixture) -> dict[str, np.ndarray]:
    source = read_source(fixture.resolve(fixture.entry.get("model", "models/rmvpe.pt")))
    config, weights = convert(source)
    model = rmvpe.build(rmvpe.RmvpeConfig.from_dict(config), weights)
    mel = log_mel(fixture["input_16k"])
    hidden = model.salience(mel)
    threshold = float(fixture["thred"]) if "thred" in fixture.arrays else rmvpe.VOICING_THRESHOLD
    return {"mel": mel, "hidden": hidden, "f0": salience_to_f0(hidden, threshold=threshold)}
