"""The options of one conversion: a frozen, validated dataclass shared by the CLI, the web app and Python."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .dsp.chunks import ChunkConfig

OUTPUT_FORMATS = ("wav", "flac", "ogg", "mp3")
BIT_DEPTHS = (16, 24, 32)  # 32 = float (wav/flac accept 16/24; flac has no float)
UNVOICED_MODES = ("interpolate", "keep")
PRECISIONS = ("float32", "tf32")  # as mlx_rvc.backend.PRECISIONS (options import no MLX)


@dataclass(frozen=True)
class ConversionOptions:
    """How to convert. Defaults are the RVC WebUI's."""

    pitch: int = 0  # transpose in semitones (+12 = one octave up); -24..24
    f0_method: str = "rmvpe"  # pitch tracker: rmvpe, pm, harvest, dio, fcpe, crepe, crepe-tiny (voices with f0 only)
    index_rate: float = 0.75  # 0..1, how much retrieved training features replace the input's
    protect: float = 0.33  # 0..0.5, keep input features on unvoiced frames (0.5 = off)
    rms_mix_rate: float = 0.25  # 0..1, 1 = output loudness as synthesized, 0 = input's envelope
    filter_radius: int = 3  # 0..7, median filter on harvest/dio pitch (frames); ≥3 enables it
    unvoiced: str = "interpolate"  # "interpolate" (2026 reference) or "keep" zeros (classic RVC: protect acts)
    resample_sr: int = 0  # output rate in Hz, 16000..192000; 0 = the voice's own rate
    speaker: int = 0  # speaker id of multi-speaker voices
    seed: int = 0  # seed of the synthesizer's random draws: equal seeds, equal audio
    index_path: Path | None = None  # retrieval index; None = the voice's own, if it has one
    f0_file: Path | None = None  # optional f0 curve (CSV "seconds,hz" per line) replacing the tracker's
    output_format: str = "wav"  # container of written files
    bit_depth: int = 16  # 16 or 24 bit PCM, or 32 = float (where the format allows)
    chunking: ChunkConfig = field(default_factory=ChunkConfig)  # where long inputs are cut
    precision: str | None = None  # "float32" or "tf32" (GPU matmuls); None = the process's (MLX_RVC_PRECISION, default float32)

    def __post_init__(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        check(isinstance(self.pitch, int) and -24 <= self.pitch <= 24, f"pitch must be an integer in -24..24, got {self.pitch!r}")
        check(0.0 <= self.index_rate <= 1.0, f"index_rate must be in 0..1, got {self.index_rate}")
        check(0.0 <= self.protect <= 0.5, f"protect must be in 0..0.5, got {self.protect}")
        check(0.0 <= self.rms_mix_rate <= 1.0, f"rms_mix_rate must be in 0..1, got {self.rms_mix_rate}")
        check(isinstance(self.filter_radius, int) and 0 <= self.filter_radius <= 7,
              f"filter_radius must be an integer in 0..7, got {self.filter_radius!r}")
        check(self.unvoiced in UNVOICED_MODES, f"unvoiced must be one of {UNVOICED_MODES}, got {self.unvoiced!r}")
        check(self.resample_sr == 0 or 16000 <= self.resample_sr <= 192000,
              f"resample_sr must be 0 (voice rate) or 16000..192000 Hz, got {self.resample_sr}")
        check(isinstance(self.speaker, int) and self.speaker >= 0, f"speaker must be a non-negative integer, got {self.speaker!r}")
        check(isinstance(self.seed, int), f"seed must be an integer, got {self.seed!r}")
        check(self.output_format in OUTPUT_FORMATS, f"output_format must be one of {OUTPUT_FORMATS}, got {self.output_format!r}")
        check(self.bit_depth in BIT_DEPTHS, f"bit_depth must be one of {BIT_DEPTHS}, got {self.bit_depth!r}")
        check(not (self.output_format in ("flac",) and self.bit_depth == 32), "flac has no 32-bit float samples; use 16 or 24")
        check(self.precision in (None, *PRECISIONS), f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.index_path is not None and not isinstance(self.index_path, Path):
            object.__setattr__(self, "index_path", Path(self.index_path))
        if self.f0_file is not None and not isinstance(self.f0_file, Path):
            object.__setattr__(self, "f0_file", Path(self.f0_file))

    def with_(self, **changes: Any) -> "ConversionOptions":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("index_path", "f0_file"):
            d[k] = str(d[k]) if d[k] is not None else None
        return d

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
