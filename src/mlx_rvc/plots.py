"""Pictures: waveforms and spectrograms side by side, with f0 contours (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import stft_magnitude

SPEC_N_FFT = 1024  # samples per analysis window of the pictures
SPEC_HOP = 256
WAVEFORM_POINTS = 4_000  # beyond this many samples the waveform is drawn as an envelope (the axes are ~700 px)
SPEC_TOP_HZ = 8000  # the spectrogram shows 0..8 kHz
SPEC_MAX_COLUMNS = 1400  # longer spectrograms are max-pooled to this many frames (twice the axes' pixels)


def _spectrogram_db(x: np.ndarray, sr: int | None = None) -> np.ndarray:
    """(bins, frames) in dB; with ``sr``, only the bins up to SPEC_TOP_HZ and at most
    SPEC_MAX_COLUMNS frames (each the loudest of the frames it covers): what the picture shows."""
    mag = stft_magnitude(x, n_fft=SPEC_N_FFT, hop=SPEC_HOP).T  # (bins, frames)
    if sr is not None:
        mag = mag[: int(np.ceil(SPEC_TOP_HZ / (sr / SPEC_N_FFT))) + 1]
        if mag.shape[1] > SPEC_MAX_COLUMNS:
            step = -(-mag.shape[1] // SPEC_MAX_COLUMNS)
            pad = (-mag.shape[1]) % step
            mag = np.pad(mag, ((0, 0), (0, pad))).reshape(mag.shape[0], -1, step).max(axis=2)
    return 20 * np.log10(np.maximum(mag, 1e-5))


def comparison_figure(signals: list[tuple[str, np.ndarray, int]], *,
                      f0: list[np.ndarray | None] | None = None, f0_rate: float = 100.0):
    """A matplotlib Figure: one row per signal, waveform on the left, spectrogram (+f0) on the right.

    signals: (title, mono audio, sample rate); f0: per signal, Hz at ``f0_rate`` frames/s (0 = unvoiced).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(signals)
    fig, axes = plt.subplots(n, 2, figsize=(13, 2.8 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.3]})
    specs = [_spectrogram_db(np.asarray(x, np.float32).ravel(), sr) if len(x) else None for _, x, sr in signals]
    vmax = max((float(s.max()) for s in specs if s is not None and s.size), default=0.0)
    for row, (title, x, sr) in enumerate(signals):
        x = np.asarray(x, np.float32).ravel()
        t = np.arange(len(x)) / sr
        ax = axes[row][0]
        if len(x) > WAVEFORM_POINTS:  # long audio: draw the min/max envelope of short buckets
            n = len(x) // (WAVEFORM_POINTS // 2) or 1
            buckets = x[: len(x) // n * n].reshape(-1, n)
            tb = np.arange(len(buckets)) * n / sr
            ax.fill_between(tb, buckets.min(axis=1), buckets.max(axis=1), color="tab:blue", linewidth=0)
        else:
            ax.plot(t, x, linewidth=0.4, color="tab:blue")
        ax.set_xlim(0, max(t[-1] if len(t) else 1, 1e-3))
        ax.set_ylim(-1.05, 1.05)
        ax.set_title(f"{title}: waveform", fontsize=9)
        ax.set_xlabel("s", fontsize=8)
        ax = axes[row][1]
        spec = specs[row]
        if spec is not None and spec.size:
            extent = (0, len(x) / sr, 0, (spec.shape[0] - 1) * sr / SPEC_N_FFT)
            ax.imshow(spec, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=vmax - 90, vmax=vmax,
                      interpolation="nearest")
            ax.set_ylim(0, min(sr / 2, SPEC_TOP_HZ))
        contour = f0[row] if f0 is not None and row < len(f0) else None
        if contour is not None and len(contour):
            tc = np.arange(len(contour)) / f0_rate
            contour = np.asarray(contour, np.float64)
            voiced = np.where(contour > 0, contour, np.nan)
            f0_ax = ax.twinx()  # its own scale: on the spectrogram's 0–8 kHz axis f0 is a flat line
            f0_ax.plot(tc, voiced, color="cyan", linewidth=1.4, label="f0")
            top = np.nanmax(voiced) if np.isfinite(voiced).any() else 500.0
            f0_ax.set_ylim(0, max(top * 1.4, 100.0))
            f0_ax.set_ylabel("f0 (Hz)", fontsize=8, color="cyan")
            f0_ax.tick_params(axis="y", labelsize=7, colors="cyan")
        ax.set_title(f"{title}: spectrogram (Hz)", fontsize=9)
        ax.set_xlabel("s", fontsize=8)
    # fixed margins: tight_layout measures every label with a full extra text layout pass
    rows = len(signals)
    fig.subplots_adjust(left=0.05, right=0.94, bottom=0.5 / (2.8 * rows), top=1 - 0.3 / (2.8 * rows),
                        wspace=0.22, hspace=0.55)
    return fig


def save_figure(fig, path: str | Path, *, dpi: int = 110, overwrite: bool = True, inputs=()) -> Path:
    """Write a figure as PNG atomically (see :func:`mlx_rvc.safety.atomic_file`), then close it."""
    import matplotlib.pyplot as plt

    from .safety import atomic_file

    path = Path(path)
    try:
        with atomic_file(path, overwrite=overwrite, inputs=inputs, what="picture") as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path
