"""Parity runner for synthesizer fixtures (``synth_*.npz``): ``net_g.infer`` with recorded draws.

Fixture arrays use the reference's (B, C, T) layout; the MLX model is channels-last, so inputs
are transposed on the way in and produced arrays on the way out.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..importer import convert, read_source
from ..models import synthesizer as synth
from . import Fixture, Tolerance

# Every intermediate passes through at most a few dozen float32 operations per value on
# tiny/full-size models (accumulations of ≤ 3·512·11 products), so relative errors of a few
# 1e-6 are rounding; 1e-4 leaves a factor ~30 for accumulation order and transcendental ULPs
# while still catching any wrong tap, scale or layout (those give errors of order 1).
_INTERMEDIATE = Tolerance(rel_rms=1e-4, corr=0.99999)
# The sine excitation's phase is accumulated over T·upp samples; float32 rounding of the
# wrapped phase (≤ 1 cycle) bounds the error near 1e-6 relative: same bar.
# Audio: the end bars (waveform corr ≥ 0.9999, spectrogram corr ≥ 0.999, RMS within
# 0.1 %) plus the same relative-RMS bar as the intermediates.
TOLERANCES: dict[str, Tolerance] = {
    "audio": Tolerance(rel_rms=1e-3, corr=0.9999, spec_corr=0.999, rms_ratio=(0.999, 1.001), audio=True),
    "*": _INTERMEDIATE,
}


def _bct(x: mx.array | np.ndarray) -> np.ndarray:
    """(B, T, C) channels-last -> the reference's (B, C, T)."""
    return np.asarray(x).transpose(0, 2, 1)


def run(fixture: Fixture) -> dict[str, np.ndarray]:
    source = read_source(fixture.resolve(fixture.entry["model"]))
    config, weights = convert(source)
    cfg = synth.SynthesizerConfig.from_dict(config)
    model = synth.build(cfg, weights)
    phone = mx.array(fixture["phone"].astype(np.float32))
    lengths = mx.array(fixture["phone_lengths"].astype(np.int32))
    sid = mx.array(fixture["sid"].astype(np.int32))
    draws = {d["role"]: fixture[d["key"]] for d in fixture.entry.get("random_draws", []) if d.get("key")}
    noise = synth.SynthNoise(
        z_p=_bct(draws["z_p_noise"]) if "z_p_noise" in draws else None,
        sine=draws.get("sine_noise"),
    )
    pitch = mx.array(fixture["pitch"].astype(np.int32)) if cfg.f0 else None
    pitchf = fixture["pitchf"].astype(np.float32) if cfg.f0 else None
    trace: dict = {}
    audio = model.infer(phone, lengths, sid, pitch=pitch, pitchf=pitchf, noise=noise, trace=trace)
    mx.eval(audio, trace)
    out: dict[str, np.ndarray] = {"audio": np.asarray(audio)[:, None, :]}
    for key, value in trace.items():
        value = np.asarray(value)
        if key in ("g",):
            out[key] = value[:, 0, :]
        elif key in ("sine_waves", "har_source"):
            out[key] = value
        else:
            out[key] = _bct(value)
    return out
