"""Parity runner for end-to-end fixtures (``e2e_*.npz``): ``VC.vc_single`` with recorded draws.

The fixture starts after decoding (``input_audio_16k``); its voice, content encoder, pitch model
and index are imported into a temporary library, the recorded synthesizer draws are injected
chunk by chunk, and every stored stage is compared.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..dsp.chunks import ChunkConfig
from ..importer import import_model
from ..options import ConversionOptions
from ..pipeline import ChunkDraws, VoiceConverter
from . import Fixture, Tolerance

# Features and intermediates: float32 rounding through HuBERT/synthesizer (see synth/hubert runners).
_STAGE = Tolerance(rel_rms=1e-4, corr=0.9999)
TOLERANCES: dict[str, Tolerance] = {
    "chunk_start": Tolerance(exact=True),
    "chunk_end": Tolerance(exact=True),
    "*_synth_p_len": Tolerance(exact=True),
    # coarse pitch is rounded: a float32 difference at a .5 boundary moves a frame by one bin
    "pitch_full": Tolerance(max_abs=1),
    "*_synth_pitch": Tolerance(max_abs=1),
    # the end-to-end bars: spectrogram corr ≥ 0.999, waveform corr ≥ 0.99
    "output_int16": Tolerance(corr=0.99, spec_corr=0.999, rms_ratio=(0.99, 1.01), audio=True),
    "audio_before_rms": Tolerance(corr=0.99, spec_corr=0.999, audio=True),
    "audio_after_rms": Tolerance(corr=0.99, spec_corr=0.999, audio=True),
    "*": _STAGE,
}


def chunk_draws(fixture: Fixture) -> list[ChunkDraws]:
    """Recorded draws grouped per chunk: each chunk starts with its z_p noise."""
    out: list[ChunkDraws] = []
    for d in fixture.entry.get("random_draws", []):
        if not d.get("key"):
            continue
        if d["role"] == "z_p_noise":
            out.append(ChunkDraws(z_p=fixture[d["key"]]))
        elif d["role"] == "sine_noise":
            out[-1].sine = fixture[d["key"]]
    return out


def run(fixture: Fixture) -> dict[str, np.ndarray]:
    entry = fixture.entry
    params = entry["params"]
    c = entry["config"]
    with tempfile.TemporaryDirectory(prefix="mlx-rvc-parity-") as tmp:
        tmp = Path(tmp)
        voice = import_model(fixture.resolve(entry["model"]), out=tmp / "voice").path
        encoder = import_model(fixture.resolve(f"models/{entry['hubert']}"), out=tmp / "encoder").path
        pitch_model = None
        if params.get("f0_method") == "rmvpe":
            pitch_model = import_model(fixture.resolve(entry["rmvpe"]), out=tmp / "rmvpe").path
        index = params.get("file_index") or None
        options = ConversionOptions(
            pitch=int(params.get("f0_up_key", 0)), f0_method=params.get("f0_method") or "rmvpe",
            index_rate=float(params.get("index_rate", 0)) if index else 0.0,
            protect=float(params["protect"]), rms_mix_rate=float(params["rms_mix_rate"]),
            resample_sr=int(params.get("resample_sr", 0)), speaker=int(params.get("sid", 0)),
            index_path=fixture.resolve(index) if index else None,
            chunking=ChunkConfig(c["x_pad"], c["x_query"], c["x_center"], c["x_max"]),
        )
        converter = VoiceConverter(voice, encoder=encoder, pitch_model=pitch_model)
        audio = fixture["pipeline_input_16k"] if "pipeline_input_16k" in fixture.arrays else fixture["input_audio_16k"]
        result = converter.convert(audio, 16000, options, draws=chunk_draws(fixture), trace=True, prepared=True)
    out = dict(result.trace)
    out["chunk_start"] = np.array([ch.start for ch in result.chunks], np.int64)
    out["chunk_end"] = np.array([ch.stop for ch in result.chunks], np.int64)
    out["output_int16"] = result.int16
    return out
