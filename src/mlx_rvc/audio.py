"""Audio file input (any common format, to mono float32) and output (atomic writes), resampling."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .errors import MlxRvcError

MAX_DECODED_SAMPLES = 4 * 3600 * 192000  # refuse to decode more than 4 h at 192 kHz (~11 GB of float32)


class AudioFileError(MlxRvcError, ValueError):
    """An audio file is missing, unreadable, or not audio."""


def resample(audio: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality band-limited resampling (soxr "HQ"); float32 in and out."""
    audio = np.asarray(audio, np.float32)
    if orig_sr == target_sr:
        return audio
    import soxr

    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32)


def _decode_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        raise AudioFileError(f"{path.name}: not a format libsndfile reads, and ffmpeg is not installed to decode it")
    probe = subprocess.run([ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate",
                            "-of", "csv=p=0", str(path)], capture_output=True, text=True, timeout=60)
    rate = probe.stdout.strip().split(",")[0] if probe.returncode == 0 else ""
    if not rate.isdigit() or int(rate) <= 0:
        raise AudioFileError(f"{path.name}: not audio (no decodable audio stream)")
    out = subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le",
                          "-acodec", "pcm_f32le", "-ac", "1", "-"], capture_output=True, timeout=3600)
    if out.returncode != 0:
        msg = out.stderr.decode(errors="replace").strip().splitlines()
        raise AudioFileError(f"{path.name}: decoding failed ({msg[-1][:120] if msg else 'ffmpeg error'})")
    return np.frombuffer(out.stdout, np.float32).copy(), int(rate)


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode an audio file to mono float32 at its own rate: (samples, sample_rate).

    wav/flac/ogg/mp3/aiff... through libsndfile; anything else (m4a, aac, opus, webm...) through
    ffmpeg when it is installed. Raises FileNotFoundError or AudioFileError (one line).
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if not path.is_file():
        raise AudioFileError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path.name}: empty file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        audio, sr = _decode_ffmpeg(path)
    else:
        if info.frames * max(info.channels, 1) > MAX_DECODED_SAMPLES:
            raise AudioFileError(f"{path.name}: {info.duration / 3600:.1f} h of audio is more than this tool converts")
        try:
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioFileError(f"{path.name}: unreadable audio ({str(exc).strip()[:120]})") from exc
        audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if audio.size == 0:
        raise AudioFileError(f"{path.name}: contains no audio samples")
    return np.ascontiguousarray(audio, np.float32), int(sr)

SUBTYPES = {"PCM_16": 16, "PCM_24": 24, "FLOAT": 32}  # soundfile subtype -> bits


class AudioWriter:
    """Writes mono audio in [-1, 1] to ``path`` block by block, atomically.

    Blocks go to a temporary file beside ``path``, renamed into place when the ``with`` block
    ends without an error (and removed otherwise). The container follows the suffix (.wav,
    .flac, .ogg, .mp3); samples beyond ±1 are clipped; NaN or infinite samples are refused.
    """

    def __init__(self, path: str | Path, sample_rate: int, *, subtype: str = "PCM_16"):
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.subtype = subtype

    def __enter__(self) -> AudioWriter:
        import soundfile as sf

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent)
        os.close(fd)
        try:
            self._sf = sf.SoundFile(self._tmp, "w", samplerate=self.sample_rate, channels=1, subtype=self.subtype)
        except BaseException:
            Path(self._tmp).unlink(missing_ok=True)
            raise
        return self

    def write(self, audio: np.ndarray) -> None:
        audio = np.clip(np.asarray(audio, np.float32).reshape(-1), -1.0, 1.0)
        if not np.all(np.isfinite(audio)):
            raise ValueError("audio contains NaN or infinite samples")
        self._sf.write(audio)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._sf.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            Path(self._tmp).unlink(missing_ok=True)


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16") -> Path:
    """Write mono audio in [-1, 1] to ``path`` atomically (see :class:`AudioWriter`)."""
    with AudioWriter(path, sample_rate, subtype=subtype) as writer:
        writer.write(audio)
    return Path(path)
