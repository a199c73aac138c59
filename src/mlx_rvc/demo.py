"""``mlx-rvc demo``: the whole conversion pipeline with nothing downloaded.

It builds an untrained voice (the full-size RVC v1 40 kHz architecture) and a small untrained
content encoder with random weights, imports them as model directories, converts a bundled
speech clip through every stage (pitch with Praat's tracker, content features, synthesis,
loudness mix) and writes the result, a comparison picture and the stage timings. Untrained
weights cannot sound like a voice: the output is a buzz that follows the clip's pitch and
rhythm. The demo shows that everything installs and runs, and how fast.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

ASSET = Path(__file__).parent / "assets" / "demo_speech.flac"  # 6.9 s of espeak-ng speech, 16 kHz
DEMO_VOICE = ("v1", 40000)


@dataclass
class DemoResult:
    output: Path
    picture: Path
    input_seconds: float
    output_seconds: float
    sample_rate: int
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds


def demo_encoder_config():
    """A small HuBERT-shaped encoder that can make v1 (256-d) features: 9 layers of width 256."""
    from .models.hubert import HubertConfig

    return HubertConfig(hidden_size=256, num_hidden_layers=9, num_attention_heads=4, intermediate_size=1024,
                        conv_dim=(128,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                        conv_bias=False, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
                        final_proj_size=256)


def build_models(root: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """Write the untrained demo voice and encoder as model directories under ``root``."""
    from . import artifact
    from .models import hubert, synthesizer

    voice_cfg = synthesizer.standard_config(*DEMO_VOICE, f0=True)
    voice = artifact.write_model_dir(
        root / "voice", config={"model_type": "rvc_voice", **voice_cfg.to_dict(), "info": "untrained demo voice"},
        weights=synthesizer.random_weights(voice_cfg, seed=seed))
    enc_cfg = demo_encoder_config()
    encoder = artifact.write_model_dir(
        root / "encoder", config={"model_type": "hubert", **enc_cfg.to_dict(), "info": "untrained demo encoder"},
        weights=hubert.random_weights(enc_cfg, seed=seed + 1))
    return voice, encoder


def _unpadded(f0, options):
    """The f0 contour without the reflect padding's frames (100 per padded second)."""
    if f0 is None:
        return None
    pad = 100 * options.chunking.x_pad
    return f0[pad: len(f0) - pad]


MARKER = ".mlx-rvc-demo"  # marks a folder the demo made: its outputs there may be replaced by the next run


def _claim(out_dir: Path) -> Path:
    """``out_dir`` if it is new, empty or an earlier demo's; a user's folder is refused (nothing in
    it is ever replaced)."""
    from .safety import UnsafeOutputError, writable_folder

    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise UnsafeOutputError(f"--out {out_dir} is a folder the demo did not make; choose a new or empty one")
    writable_folder(out_dir, what="demo folder")
    (out_dir / MARKER).touch()
    return out_dir


def run_demo(out_dir: str | Path = "mlx-rvc-demo", *, seed: int = 0, input_path: Path = ASSET) -> DemoResult:
    from .audio import load_audio, write_audio
    from .options import ConversionOptions
    from .pipeline import VoiceConverter
    from .plots import comparison_figure, save_figure

    out_dir = _claim(Path(out_dir))
    t0 = time.perf_counter()
    voice_dir, encoder_dir = build_models(out_dir / "models", seed=seed)
    converter = VoiceConverter(voice_dir, encoder=encoder_dir)
    built = time.perf_counter() - t0
    audio, sr = load_audio(input_path)
    options = ConversionOptions(f0_method="pm", seed=seed)
    result = converter.convert(audio, sr, options)
    t0 = time.perf_counter()
    output = write_audio(out_dir / "demo_converted.wav", result.audio, result.sample_rate)
    fig = comparison_figure([("input", audio, sr), ("converted (untrained voice)", result.audio, result.sample_rate)],
                            f0=[None, _unpadded(result.f0, options)])
    picture = save_figure(fig, out_dir / "demo_comparison.png")
    written = time.perf_counter() - t0
    timings = {"build models": built, **result.timings, "write": written}
    return DemoResult(output, picture, len(audio) / sr, len(result.audio) / result.sample_rate,
                      result.sample_rate, timings)
