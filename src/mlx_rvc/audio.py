"""Audio file input (any common format, to mono float32) and output (atomic writes), resampling."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .errors import MlxRvcError

MAX_DECODED_SAMPLES = 4 * 3600 * 192000  # refuse to decode more than 4 h at 192 kHz (~11 GB of float32)
# Decompression bombs: a damaged or forged header can make a 2 kB mp3 decode to a billion samples.
# Real codecs stay far below this many samples per byte of file (digital silence in FLAC, the
# most compressible case, is a few hundred); a short file may always decode to a minute.
MAX_SAMPLES_PER_BYTE = 4096
MIN_ALLOWED_SECONDS = 60


def _sample_cap(size: int, rate: int) -> int:
    """The most samples (over all channels) a file of ``size`` bytes may decode to."""
    return min(MAX_DECODED_SAMPLES, max(size * MAX_SAMPLES_PER_BYTE, MIN_ALLOWED_SECONDS * max(rate, 1) * 2))


def _bomb(path: Path, samples: int, size: int) -> AudioFileError:
    return AudioFileError(f"{path.name}: {samples} samples from {size} bytes of file; damaged or not real audio")


class AudioFileError(MlxRvcError, ValueError):
    """An audio file is missing, unreadable, or not audio."""


def resample(audio: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality band-limited resampling (soxr "HQ"); float32 in and out."""
    audio = np.asarray(audio, np.float32)
    if orig_sr == target_sr:
        return audio
    import soxr

    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32)


def resample_blocks(blocks: Iterable[np.ndarray], orig_sr: int, target_sr: int) -> Iterator[np.ndarray]:
    """:func:`resample` of a signal given in consecutive blocks, yielded in blocks: soxr's
    streaming resampler with the same filter gives the one-shot result exactly."""
    if orig_sr == target_sr:
        yield from blocks
        return
    import soxr

    stream = soxr.ResampleStream(orig_sr, target_sr, 1, dtype="float32", quality="HQ")
    for block in blocks:
        yield stream.resample_chunk(np.asarray(block, np.float32), last=False)
    yield stream.resample_chunk(np.zeros(0, np.float32), last=True)


DECODE_BLOCK = 1 << 18  # frames decoded per block


class _Gather:
    """Collects blocks into one float32 array, preallocated when the length is announced."""

    def __init__(self, expected: int | None):
        self.out = np.empty(expected, np.float32) if expected is not None else None
        self.parts: list[np.ndarray] = []
        self.n = 0

    def add(self, y: np.ndarray) -> None:
        if self.out is not None and self.n + len(y) > len(self.out):  # longer than announced
            self.parts.append(self.out[:self.n])
            self.out = None
        if self.out is not None:
            self.out[self.n: self.n + len(y)] = y
        else:
            self.parts.append(np.array(y, np.float32))
        self.n += len(y)

    def result(self) -> np.ndarray:
        return self.out[:self.n] if self.out is not None else np.concatenate(self.parts or [np.zeros(0, np.float32)])


def _ffmpeg_blocks(path: Path, block: int):
    """(rate, iterator of mono float32 blocks) from ffmpeg, read from its pipe as it decodes."""
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        raise AudioFileError(f"{path.name}: not a format libsndfile reads, and ffmpeg is not installed to decode it")
    probe = subprocess.run([ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate",
                            "-of", "csv=p=0", str(path)], capture_output=True, text=True, timeout=60)
    rate = probe.stdout.strip().split(",")[0] if probe.returncode == 0 else ""
    if not rate.isdigit() or int(rate) <= 0:
        raise AudioFileError(f"{path.name}: not audio (no decodable audio stream)")

    cap = _sample_cap(path.stat().st_size, int(rate))

    def blocks():
        produced = 0
        proc = subprocess.Popen([ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le",
                                 "-acodec", "pcm_f32le", "-ac", "1", "-"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            while data := proc.stdout.read(block * 4):
                produced += len(data) // 4
                if produced > cap:
                    raise _bomb(path, produced, path.stat().st_size)
                yield np.frombuffer(data[: len(data) // 4 * 4], np.float32)
            err = proc.stderr.read().decode(errors="replace").strip().splitlines()
            if proc.wait() != 0:
                raise AudioFileError(f"{path.name}: decoding failed ({err[-1][:120] if err else 'ffmpeg error'})")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    return int(rate), None, blocks()


def _open(path: str | Path, max_seconds: float | None):
    """(sample rate, frame count or None, iterator of mono float32 blocks) of an audio file.

    wav/flac/ogg/mp3/aiff... through libsndfile (channels averaged); anything else (m4a, aac,
    opus, webm...) through ffmpeg when it is installed.
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
        return _ffmpeg_blocks(path, DECODE_BLOCK)
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioFileError(f"{path.name}: damaged header ({info.samplerate} Hz, {info.channels} channels)")
    if info.frames * max(info.channels, 1) > MAX_DECODED_SAMPLES or (max_seconds and info.duration > max_seconds):
        raise AudioFileError(f"{path.name}: {info.duration / 3600:.1f} h of audio is more than this tool converts")
    size = path.stat().st_size
    cap = _sample_cap(size, int(info.samplerate))
    if info.frames * info.channels > cap:
        raise _bomb(path, info.frames * info.channels, size)

    def blocks():
        produced = 0
        try:
            with sf.SoundFile(str(path)) as f:
                for data in f.blocks(blocksize=DECODE_BLOCK, dtype="float32", always_2d=True):
                    produced += data.size
                    if produced > cap:  # decodes past what it announced
                        raise _bomb(path, produced, size)
                    yield data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioFileError(f"{path.name}: unreadable audio ({str(exc).strip()[:120]})") from exc

    return int(info.samplerate), int(info.frames), blocks()


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode an audio file to mono float32 at its own rate: (samples, sample_rate).

    Raises FileNotFoundError or AudioFileError (one line).
    """
    rate, frames, blocks = _open(path, None)
    audio = _Gather(frames)
    for block in blocks:
        audio.add(block)
    if audio.n == 0:
        raise AudioFileError(f"{Path(path).name}: contains no audio samples")
    return audio.result(), rate


def load_audio_16k(path: str | Path, *, max_seconds: float | None = None) -> tuple[np.ndarray, float]:
    """Decode to mono float32 at 16 kHz, block by block: (samples, seconds of the original).

    The same samples as :func:`load_audio` followed by :func:`resample` to 16 kHz (soxr's
    streaming resampler with the same filter reproduces the one-shot result), but only the
    16 kHz signal is ever held whole. Inputs longer than ``max_seconds`` are refused before
    decoding when the container announces its length.
    """
    target = 16000
    rate, frames, blocks = _open(path, max_seconds)
    audio = _Gather(int(np.ceil(frames * target / rate)) + 64 if frames is not None else None)
    decoded = 0

    def counted():
        nonlocal decoded
        for block in blocks:
            decoded += len(block)
            yield block

    for block in resample_blocks(counted(), rate, target):
        audio.add(block)
    if decoded == 0:
        raise AudioFileError(f"{Path(path).name}: contains no audio samples")
    return audio.result(), decoded / rate


SUBTYPES = {"PCM_16": 16, "PCM_24": 24, "FLOAT": 32}  # soundfile subtype -> bits


class AudioWriter:
    """Writes mono audio in [-1, 1] to ``path`` block by block, atomically.

    Blocks go to a temporary file beside ``path`` (see :mod:`mlx_rvc.safety`), renamed into
    place when the ``with`` block ends without an error (and removed otherwise). An existing file
    at ``path`` is replaced only with ``overwrite`` (a folder never is), and ``inputs`` are never
    written over. The container follows the suffix (.wav, .flac, .ogg, .mp3); samples beyond ±1
    are clipped; NaN or infinite samples are refused.
    """

    def __init__(self, path: str | Path, sample_rate: int, *, subtype: str = "PCM_16", overwrite: bool = True,
                 inputs: Iterable[str | Path] = ()):
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.subtype = subtype
        self.overwrite = overwrite
        self.inputs = tuple(inputs)

    def __enter__(self) -> AudioWriter:
        import contextlib

        import soundfile as sf

        from .safety import atomic_file

        self._stack = contextlib.ExitStack()
        try:
            tmp = self._stack.enter_context(atomic_file(self.path, overwrite=self.overwrite, inputs=self.inputs))
            self._sf = sf.SoundFile(str(tmp), "w", samplerate=self.sample_rate, channels=1, subtype=self.subtype,
                                    format=_FORMATS.get(self.path.suffix.lower()))
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            if isinstance(exc, MlxRvcError):
                raise
            raise AudioFileError(f"{self.path.name}: cannot write {self.sample_rate} Hz {self.subtype} audio "
                                 f"({str(exc).strip().splitlines()[-1][:120] if str(exc).strip() else type(exc).__name__})") from exc
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
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
        except BaseException as close_exc:
            if exc_type is None:
                exc_type, exc, tb = type(close_exc), close_exc, close_exc.__traceback__
            self._stack.__exit__(exc_type, exc, tb)
            raise
        self._stack.__exit__(exc_type, exc, tb)


_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG", ".mp3": "MP3"}
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)  # the MPEG-1/2/2.5 rates


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16",
                overwrite: bool = True, inputs: Iterable[str | Path] = ()) -> Path:
    """Write mono audio in [-1, 1] to ``path`` atomically (see :class:`AudioWriter`)."""
    with AudioWriter(path, sample_rate, subtype=subtype, overwrite=overwrite, inputs=inputs) as writer:
        writer.write(audio)
    return Path(path)
