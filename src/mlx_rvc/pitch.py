"""Pitch (f0) estimation: a registry of trackers behind one interface, and one post-processing path.

Trackers take 16 kHz audio and return f0 in Hz per 10 ms frame (0 = unvoiced):

* ``rmvpe`` — the RMVPE network (MLX), the reference's default;
* ``pm`` — Praat's autocorrelation method via praat-parselmouth, with the reference's settings;
* ``harvest`` and ``dio`` — WORLD (pyworld) with StoneMask refinement, median-filtered when
  ``filter_radius`` ≥ 3, as classic RVC did;
* ``fcpe`` — the FCPE network (MLX), the 2026 reference's third method: its ``local_argmax``
  decoder at threshold 0.006, resized onto the pipeline's frames as the reference does;
* ``crepe`` and ``crepe-tiny`` — the CREPE networks (MLX, full and tiny) with torchcrepe's Viterbi
  decoding as RVC and Applio call it (50–1100 Hz, batches of 512 frames, periodicity median and
  f0 mean filters of 3 frames, unvoiced below periodicity 0.1).

:func:`postprocess` then does, for every tracker alike: optional unvoiced interpolation (the 2026
reference) or keeping zeros (classic RVC, so ``protect`` can act), the semitone shift, an
optional f0 curve from a file, and the coarse pitch of :func:`mlx_rvc.dsp.f0.coarse_pitch`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .dsp.f0 import F0_MAX, F0_MIN, coarse_pitch, fill_unvoiced, shift_semitones
from .dsp.mel import HOP, N_FFT
from .errors import MlxRvcError

SAMPLE_RATE = 16000  # Hz
FRAME_SECONDS = 0.01  # one f0 value per 10 ms
PM_VOICING_THRESHOLD = 0.6  # the reference's Praat setting
PM_PERIODS_PER_WINDOW = 3  # Praat's autocorrelation window: three periods of the pitch floor
METHODS = ("rmvpe", "pm", "harvest", "dio", "fcpe", "crepe", "crepe-tiny")
NETWORK_METHODS = ("fcpe", "crepe", "crepe-tiny")  # trackers whose network lives in the library's pitch models


class PitchError(MlxRvcError, ValueError):
    """A pitch method or f0 file cannot be used."""


def _pm(audio: np.ndarray) -> np.ndarray:
    """Praat's contour; none (all unvoiced once aligned) for a clip shorter than Praat's window."""
    import parselmouth

    if audio.size < PM_PERIODS_PER_WINDOW * SAMPLE_RATE / F0_MIN:
        return np.zeros(0)
    return (parselmouth.Sound(np.asarray(audio, np.float64), SAMPLE_RATE)
            .to_pitch_ac(time_step=FRAME_SECONDS, voicing_threshold=PM_VOICING_THRESHOLD,
                         pitch_floor=F0_MIN, pitch_ceiling=F0_MAX)
            .selected_array["frequency"])


def centre_pm(f0: np.ndarray, p_len: int) -> np.ndarray:
    """Praat's frames start half a window into the signal: centre its contour on ``p_len`` frames with zeros."""
    left = (p_len - len(f0) + 1) // 2
    right = p_len - len(f0) - left
    if left > 0 or right > 0:
        f0 = np.pad(f0, [(max(left, 0), max(right, 0))])
    return f0


def _world(audio: np.ndarray, method: str, filter_radius: int) -> np.ndarray:
    import pyworld
    from scipy.signal import medfilt

    x = np.asarray(audio, np.float64)
    track = pyworld.harvest if method == "harvest" else pyworld.dio
    f0, times = track(x, fs=SAMPLE_RATE, f0_floor=F0_MIN, f0_ceil=F0_MAX, frame_period=FRAME_SECONDS * 1000)
    f0 = pyworld.stonemask(x, f0, times, SAMPLE_RATE)
    if filter_radius > 2 and f0.size >= 3:
        f0 = medfilt(f0, 3)
    return f0


def estimate(audio: np.ndarray, *, method: str = "rmvpe", rmvpe: Callable[[], object] | None = None,
             filter_radius: int = 3, network: Callable[[str], object] | None = None) -> np.ndarray:
    """The tracker's own f0 contour (Hz, 0 = unvoiced) of 16 kHz ``audio``, 10 ms frames.

    rmvpe, harvest, dio, fcpe and crepe give ``len // 160 + 1`` frames from the start of the
    signal; pm gives Praat's frames (see :func:`align`).

    Args:
        rmvpe: returns the loaded RMVPE model (called only for ``method="rmvpe"``).
        filter_radius: ≥ 3 median-filters harvest/dio output.
        network: returns the loaded network of an fcpe/crepe method, given the method's name;
            default: the library's (:func:`mlx_rvc.store.load_f0_network`).
    """
    audio = np.asarray(audio)
    if method == "rmvpe":
        if rmvpe is None:
            raise PitchError("rmvpe needs an RMVPE model: import rmvpe.pt (mlx-rvc import rmvpe.pt)")
        if audio.size <= N_FFT // 2:  # its STFT's centred reflect padding needs more: nothing to analyse
            f0 = np.zeros(audio.size // HOP + 1)
        else:
            f0 = rmvpe().f0(np.asarray(audio, np.float32))
    elif method == "pm":
        f0 = _pm(audio)
    elif method in ("harvest", "dio"):
        f0 = _world(audio, method, filter_radius)
    elif method in NETWORK_METHODS:
        if network is None:
            from .store import load_f0_network

            model = load_f0_network(method)
        else:
            model = network(method)
        f0 = model.f0(np.asarray(audio, np.float32))
    else:
        raise PitchError(f"unknown f0 method {method!r}; choose one of {', '.join(METHODS)}")
    return np.nan_to_num(np.asarray(f0, np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def resize_voiced(f0: np.ndarray, p_len: int) -> np.ndarray:
    """Stretch a contour linearly onto ``p_len`` frames, as the reference fits FCPE's ``len // 160 + 1``
    frames to its ``len // 160``: unvoiced frames count as missing, so a target frame that falls
    between a voiced and an unvoiced source frame is unvoiced too."""
    source = np.array(f0, np.float64)
    if source.size == 0 or p_len <= 0:
        return np.zeros(max(p_len, 0))
    source[source < 0.001] = np.nan
    at = np.arange(0, source.size * p_len, source.size) / p_len
    return np.nan_to_num(np.interp(at, np.arange(source.size), source))


def align(f0: np.ndarray, *, method: str, p_len: int) -> np.ndarray:
    """Put a tracker's contour on the pipeline's frame grid: pm is centred, fcpe resized (as the
    reference does); the others already start at the signal's start, 10 ms apart."""
    if method == "pm":
        return centre_pm(f0, p_len)
    if method == "fcpe":
        return resize_voiced(f0, p_len)
    return f0


def read_f0_file(path: str | Path) -> np.ndarray:
    """An f0 curve: text lines of ``seconds,hz`` (comma or whitespace separated) -> (N, 2).

    A first line that is not numbers is a header (``mlx-rvc f0 --out`` writes ``seconds,hz``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"f0 file not found: {path}")
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    delimiter = "," if lines and "," in lines[0] else None
    try:
        [float(v) for v in (lines or [""])[0].replace(",", " ").split()]
        header = 0
    except ValueError:
        header = 1
    if len(lines) - header < 2:
        raise PitchError(f"{path.name}: needs at least two 'seconds,hz' rows")
    try:
        data = np.loadtxt(path, delimiter=delimiter, ndmin=2, skiprows=header)
    except ValueError as exc:
        raise PitchError(f"{path.name}: not a 'seconds,hz' table ({exc})") from exc
    if data.shape[1] < 2 or len(data) < 2 or not np.all(np.isfinite(data[:, :2])):
        raise PitchError(f"{path.name}: needs at least two finite 'seconds,hz' rows")
    return data[np.argsort(data[:, 0]), :2]


def postprocess(f0: np.ndarray, *, semitones: float = 0.0, unvoiced: str = "interpolate",
                f0_file: str | Path | None = None, pad_frames: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Raw f0 -> (coarse pitch int32, f0 Hz float32), the synthesizer's two pitch inputs.

    unvoiced: "interpolate" fills unvoiced frames linearly from voiced neighbours (the 2026
    reference); "keep" leaves them at 0 Hz (classic RVC; ``protect`` then acts on them).
    f0_file: replaces the contour from ``pad_frames`` (the reflect padding before the audio)
    onwards with the file's curve, unshifted, as classic RVC did.
    """
    f0 = np.asarray(f0, np.float64)
    if unvoiced == "interpolate":
        f0 = fill_unvoiced(f0)
    elif unvoiced != "keep":
        raise PitchError(f"unvoiced must be 'interpolate' or 'keep', got {unvoiced!r}")
    f0 = shift_semitones(f0, semitones)
    if f0_file is not None:
        table = read_f0_file(f0_file)
        t0, t1 = table[0, 0], table[-1, 0]
        frames = np.arange(int(round((t1 - t0) / FRAME_SECONDS)) + 1)
        curve = np.interp(frames, (table[:, 0] - t0) / FRAME_SECONDS, table[:, 1])
        start = pad_frames + int(round(t0 / FRAME_SECONDS))
        n = max(0, min(len(curve), len(f0) - start))
        f0[start:start + n] = curve[:n]
    return coarse_pitch(f0), f0.astype(np.float32)
