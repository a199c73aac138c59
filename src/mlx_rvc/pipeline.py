"""One conversion, step by step (the data flow of DESIGN.md with the reference's numerics).

decode → mono → 16 kHz → peak guard 0.95 → 48 Hz zero-phase high-pass → reflect pad x_pad s
→ f0 once on the padded whole → chunk plan (cuts at quiet points) → per chunk: content features
→ retrieval blend → ×2 frame repeat → protect → synthesizer → trim the pads → stitch → RMS
envelope mix → optional resample → peak guard 0.99.

Each step is a small function; :class:`VoiceConverter` composes them and reports progress and
per-stage timings. Every random draw of the synthesizer can be injected per chunk
(``draws``), otherwise chunk ``i`` draws from ``numpy.random.default_rng([seed, i])``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .dsp.chunks import SAMPLE_RATE, WINDOW, Chunk, plan_chunks
from .dsp.filters import highpass_padded
from .dsp.rms import MIX_BLOCK, array_reader, mix_rms, mix_rms_blocks
from .errors import MlxRvcError
from .options import ConversionOptions
from .spool import Spool

INPUT_PEAK = 0.95  # inputs louder than this are scaled down before conversion (reference)
OUTPUT_PEAK = 0.99  # the output is scaled down if it would exceed this
MIN_INPUT_SECONDS = 0.1  # shorter inputs cannot fill one content-encoder frame with context
MAX_INPUT_SECONDS = 4 * 3600  # refuse absurd lengths before allocating for them

Progress = Callable[[str, float], None]  # (stage description, fraction of the whole done)


class AudioInputError(MlxRvcError, ValueError):
    """The input audio cannot be converted (empty, silent-by-NaN, too short, too long...)."""


@dataclass
class ChunkDraws:
    """Injected random draws for one chunk (reference layouts: z_p (1, C, T), sine (1, T·upp, 1))."""

    z_p: np.ndarray | None = None
    sine: np.ndarray | None = None


@dataclass
class ConversionResult:
    audio: np.ndarray  # float32 mono in [-1, 1] at sample_rate, after the peak guard
    sample_rate: int
    int16: np.ndarray  # what the reference returns: the same audio as int16
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    f0: np.ndarray | None = None  # Hz per 10 ms frame of the padded input (after shift), f0 voices
    chunks: list[Chunk] = field(default_factory=list)
    trace: dict[str, np.ndarray] = field(default_factory=dict)  # intermediates, when asked for


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(N,) or (N, channels) -> (N,) float32 (channel mean)."""
    audio = np.asarray(audio)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.ndim != 1:
        raise AudioInputError(f"audio must be (samples,) or (samples, channels), got shape {audio.shape}")
    return audio.astype(np.float32)


def _check_input(x: np.ndarray, seconds: float) -> None:
    if x.size == 0:
        raise AudioInputError("the input audio is empty")
    if seconds < MIN_INPUT_SECONDS:
        raise AudioInputError(f"the input is {seconds * 1000:.0f} ms long; at least {MIN_INPUT_SECONDS * 1000:.0f} ms is needed")
    if seconds > MAX_INPUT_SECONDS:
        raise AudioInputError(f"the input is {seconds / 3600:.1f} h long; the limit is {MAX_INPUT_SECONDS // 3600} h")
    if not np.all(np.isfinite(x)):
        raise AudioInputError("the input audio contains NaN or infinite samples")


def _input_peak_guard(x16: np.ndarray) -> np.ndarray:
    peak = float(np.abs(x16).max()) / INPUT_PEAK
    if peak > 1:
        x16 = x16 / np.float32(peak)
    return x16.astype(np.float32, copy=False)


def prepare_input(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Validate, downmix, resample to 16 kHz and apply the 0.95 input peak guard."""
    from .audio import resample

    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise AudioInputError(f"invalid sample rate {sample_rate!r}")
    x = to_mono(audio)
    _check_input(x, x.size / sample_rate)
    return _input_peak_guard(resample(x, orig_sr=int(sample_rate), target_sr=SAMPLE_RATE))


def repeat_frames(feats: np.ndarray) -> np.ndarray:
    """50 Hz features -> 100 Hz by repeating each frame (nearest upsampling ×2). (N, C) -> (2N, C)."""
    return np.repeat(feats, 2, axis=0)


def protect_unvoiced(feats: np.ndarray, original: np.ndarray, pitchf: np.ndarray, protect: float) -> np.ndarray:
    """Blend back the un-retrieved features where the pitch is unvoiced (f0 < 1 Hz).

    Voiced frames keep ``feats``; unvoiced ones get ``protect·feats + (1 − protect)·original``.
    With interpolated pitch (the 2026 default) no frame is unvoiced, so this changes nothing.
    """
    w = np.where(pitchf > 0, np.float32(1), np.float32(0))
    w = np.where(pitchf < 1, np.float32(protect), w)[:, None]
    return (feats * w + original * (1 - w)).astype(np.float32)


def output_peak_guard(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale down to a 0.99 peak if needed; return (float32 audio, int16 as the reference makes it)."""
    peak = float(np.abs(audio).max()) / OUTPUT_PEAK if audio.size else 0.0
    scale = 32768.0 / peak if peak > 1 else 32768.0
    as_int16 = (audio * scale).astype(np.int16)
    return (audio / np.float32(peak) if peak > 1 else audio).astype(np.float32), as_int16


@dataclass
class FileConversion:
    output: Path
    sample_rate: int
    input_seconds: float
    output_seconds: float
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds


@dataclass
class _Plan:
    """A prepared input: what every chunk is cut from."""

    padded: np.ndarray  # 16 kHz, high-passed, reflect-padded by x_pad s
    filtered: np.ndarray  # the unpadded part of ``padded`` (a view)
    pitch: np.ndarray | None  # coarse pitch per 10 ms frame of ``padded``
    pitchf: np.ndarray | None  # f0 in Hz per frame
    chunks: list[Chunk]
    timings: dict[str, float]


def release_memory() -> None:
    """Hand freed memory back to the system between phases: MLX's buffer cache, and on glibc the
    free pages the C heap keeps after numpy's large temporaries (measured: ~0.5 GB after the
    encoder's phase, which would otherwise sit under the synthesizer's peak)."""
    import ctypes
    import gc

    import mlx.core as mx

    gc.collect()
    mx.clear_cache()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


class VoiceConverter:
    """Converts audio into one voice. Models are loaded once and reused across calls.

    Args:
        voice: an imported voice directory (or a library name, resolved by :mod:`mlx_rvc.store`).
        encoder: HuBERT/ContentVec model directory; default: the library's.
        pitch_model: RMVPE model directory; default: the library's (only needed for ``rmvpe``).
        keep_models: keep RMVPE and the content encoder loaded between conversions. By default
            (``None``) the GPU form keeps them, and the CPU form drops each when its phase of a
            conversion ends (pitch, then content features of every chunk, then synthesis) and
            loads it again in the next conversion (~0.5 s together): only one model's weights
            then sit beside the synthesizer's, which keeps a conversion's peak memory under
            1.5 GB on the CPU. On a GPU the reloads were a third of a warm 30 s conversion
            (measured on an H200: 1.3 s with, 0.9-1.0 s without).
    """

    def __init__(self, voice, *, encoder=None, pitch_model=None, keep_models: bool | None = None):
        from . import forms
        from . import store

        self.voice = store.load_voice(voice)
        self._encoder_ref = encoder
        self._pitch_ref = pitch_model
        self.keep_models = forms.active() == "gpu" if keep_models is None else keep_models
        self._encoder = None
        self._rmvpe = None
        self._f0_networks: dict[str, object] = {}  # fcpe / crepe networks by f0 method
        self._index_cache: dict[Path, object] = {}

    # -- models, loaded lazily ------------------------------------------------------------------
    @property
    def encoder(self):
        if self._encoder is None:
            from . import store

            self._encoder = store.load_encoder(self._encoder_ref, version=self.voice.cfg.version)
        return self._encoder

    def rmvpe(self):
        if self._rmvpe is None:
            from . import store

            self._rmvpe = store.load_pitch_model(self._pitch_ref)
        return self._rmvpe

    def f0_network(self, method: str):
        """The library's network of an fcpe/crepe f0 method, loaded once."""
        if method not in self._f0_networks:
            from . import store

            self._f0_networks[method] = store.load_f0_network(method)
        return self._f0_networks[method]

    def index_for(self, options: ConversionOptions):
        from .retrieval import load_index

        path = options.index_path or self.voice.index_path
        if path is None or options.index_rate == 0:
            return None
        path = Path(path)
        if path not in self._index_cache:
            self._index_cache[path] = load_index(path, dim=self.voice.cfg.phone_channels)
        return self._index_cache[path]

    # -- the conversion ---------------------------------------------------------------------
    def convert(self, audio: np.ndarray, sample_rate: int, options: ConversionOptions = ConversionOptions(), *,
                progress: Progress | None = None, draws: Sequence[ChunkDraws] | None = None,
                trace: bool = False, prepared: bool = False) -> ConversionResult:
        """Convert mono/multichannel float audio at ``sample_rate`` into the voice, in memory.

        ``prepared=True`` means ``audio`` already is the 16 kHz, peak-guarded signal (what the
        reference's ``load_audio`` returns), as the e2e fixtures store it.
        """
        report = progress or (lambda stage, fraction: None)
        out_trace: dict[str, np.ndarray] = {}
        t0 = time.perf_counter()
        x16 = np.asarray(audio, np.float32) if prepared else prepare_input(audio, sample_rate)
        plan = self._analyse(x16, options, report, out_trace if trace else None, start=t0)
        del x16
        pieces = list(self._pieces(plan, options, report, draws, out_trace if trace else None))
        converted = np.concatenate(pieces).astype(np.float32)
        del pieces
        if trace:
            out_trace["audio_before_rms"] = converted

        t0 = time.perf_counter()
        cfg = self.voice.cfg
        if options.rms_mix_rate != 1:
            converted = mix_rms(plan.filtered, SAMPLE_RATE, converted, cfg.sample_rate, options.rms_mix_rate)
        if trace:
            out_trace["audio_after_rms"] = converted
        out_sr = self.output_rate(options)
        if out_sr != cfg.sample_rate:
            from .audio import resample

            converted = resample(converted, orig_sr=cfg.sample_rate, target_sr=out_sr)
        final, as_int16 = output_peak_guard(converted)
        plan.timings["finish"] = time.perf_counter() - t0
        report("done", 1.0)
        return ConversionResult(final, out_sr, as_int16, plan.timings, plan.pitchf, plan.chunks, out_trace)

    def convert_file(self, source: str | Path, target: str | Path, options: ConversionOptions = ConversionOptions(), *,
                     subtype: str = "PCM_16", progress: Progress | None = None) -> FileConversion:
        """Convert an audio file into ``target`` with memory bounded by one chunk, not the length.

        The same numbers as :meth:`convert` followed by :func:`mlx_rvc.audio.write_audio`: the
        input is decoded straight to 16 kHz and high-passed block by block, the converted chunks
        are spooled to a temporary raw file beside ``target``, then the RMS mix, optional
        resampling, the peak guard and the encoder run over it block by block. Only the 16 kHz
        input (64 kB per second) is held whole. ``target`` appears only when complete.
        """
        from .audio import AudioWriter, load_audio_16k, resample_blocks

        report = progress or (lambda stage, fraction: None)
        cfg = self.voice.cfg
        target = Path(target)
        t0 = time.perf_counter()
        report("decode", 0.0)
        x16, input_seconds = load_audio_16k(source, max_seconds=MAX_INPUT_SECONDS)
        decode = time.perf_counter() - t0
        t0 = time.perf_counter()
        _check_input(x16, input_seconds)
        x16 = _input_peak_guard(x16)
        plan = self._analyse(x16, options, report, None, start=t0)
        del x16
        plan.timings = {"decode": decode, **plan.timings}
        out_sr = self.output_rate(options)
        target.parent.mkdir(parents=True, exist_ok=True)
        with Spool(target.parent) as converted, Spool(target.parent) as mixed:
            for piece in self._pieces(plan, options, report, None, None):
                converted.append(piece)
            report("finish", 0.96)
            t0 = time.perf_counter()
            if options.rms_mix_rate != 1:
                blocks = mix_rms_blocks(array_reader(plan.filtered), len(plan.filtered), SAMPLE_RATE,
                                        converted.read, len(converted), cfg.sample_rate, options.rms_mix_rate)
            else:
                blocks = converted.blocks(MIX_BLOCK)
            for block in resample_blocks(blocks, cfg.sample_rate, out_sr):
                mixed.append(block)
            plan.timings["finish"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            peak = mixed.peak / OUTPUT_PEAK
            with AudioWriter(target, out_sr, subtype=subtype) as writer:
                for block in mixed.blocks(MIX_BLOCK):
                    writer.write(block / np.float32(peak) if peak > 1 else block)
            plan.timings["write"] = time.perf_counter() - t0
            samples = len(mixed)
        report("done", 1.0)
        return FileConversion(target, out_sr, input_seconds, samples / out_sr, plan.timings)

    def output_rate(self, options: ConversionOptions) -> int:
        """The output sample rate: ``resample_sr`` when set (≥ 16 kHz), else the voice's rate."""
        rate = options.resample_sr
        return rate if rate >= 16000 and rate != self.voice.cfg.sample_rate else self.voice.cfg.sample_rate

    def _analyse(self, x16: np.ndarray, options: ConversionOptions, report: Progress, trace: dict | None, *,
                 start: float) -> _Plan:
        """High-pass, reflect pad, pitch on the padded whole, chunk plan."""
        from .backend import fix_precision, set_precision

        if options.precision is not None:
            set_precision(options.precision)
        fix_precision()
        cfg = self.voice.cfg
        if options.speaker >= cfg.spk_embed_dim:
            raise ValueError(f"speaker {options.speaker} out of range: the voice has {cfg.spk_embed_dim}")
        t_pad = SAMPLE_RATE * options.chunking.x_pad
        padded = highpass_padded(x16, t_pad)  # float32; the filtered signal is a view into it
        filtered = padded[t_pad: len(padded) - t_pad]
        timings = {"prepare": time.perf_counter() - start}
        if trace is not None:
            trace["audio_filtered"] = filtered.astype(np.float32)
        pitch = pitchf = None
        p_len = padded.shape[0] // WINDOW
        if cfg.f0:
            from . import pitch as pitch_mod

            report("pitch", 0.02)
            t0 = time.perf_counter()
            f0 = pitch_mod.estimate(padded, method=options.f0_method, rmvpe=self.rmvpe,
                                    filter_radius=options.filter_radius, network=self.f0_network)
            if not self.keep_models and (self._rmvpe is not None or self._f0_networks):
                self._rmvpe = None
                self._f0_networks.clear()
                release_memory()
            if trace is not None:
                trace["f0_raw"] = np.asarray(f0, np.float32)
            f0 = pitch_mod.align(f0, method=options.f0_method, p_len=p_len)
            pitch, pitchf = pitch_mod.postprocess(f0, semitones=options.pitch, unvoiced=options.unvoiced,
                                                  f0_file=options.f0_file, pad_frames=t_pad // WINDOW)
            if trace is not None:
                trace["pitch_full"], trace["pitchf_full"] = pitch, pitchf
            pitch, pitchf = pitch[:p_len], pitchf[:p_len]
            timings["pitch"] = time.perf_counter() - t0
        return _Plan(padded, filtered, pitch, pitchf, plan_chunks(filtered, options.chunking), timings)

    def _pieces(self, plan: _Plan, options: ConversionOptions, report: Progress,
                draws: Sequence[ChunkDraws] | None, trace: dict | None) -> Iterator[np.ndarray]:
        """The converted audio of each chunk with its context trimmed, in order.

        Two phases, each with only its own model in memory: content features (encoder,
        retrieval, protect) for every chunk, spooled to disk; then, with the encoder dropped
        unless ``keep_models``, synthesis chunk by chunk. Each chunk's numbers are those of
        converting it alone.
        """
        import mlx.core as mx

        index = self.index_for(options)
        cfg = self.voice.cfg
        context = cfg.sample_rate * options.chunking.x_pad  # samples cut from both ends of each chunk's audio
        chunks = plan.chunks
        width = self.voice.cfg.phone_channels
        with Spool(width=width) as spool:
            lengths = []
            for i, chunk in enumerate(chunks):
                report(f"features {i + 1}/{len(chunks)}", 0.05 + 0.15 * i / len(chunks))
                pitchf = None if plan.pitchf is None else plan.pitchf[chunk.start // WINDOW:]
                feats = self._chunk_features(plan.padded[chunk.start:chunk.stop], pitchf, index, options,
                                             timings=plan.timings, trace=trace, prefix=f"chunk{i}_")
                spool.append(feats)
                lengths.append(len(feats))
            if not self.keep_models:
                self._encoder = None
                release_memory()
            start = 0
            for i, (chunk, p_len) in enumerate(zip(chunks, lengths)):
                report(f"chunk {i + 1}/{len(chunks)}", 0.2 + 0.75 * i / len(chunks))
                first = chunk.start // WINDOW
                c_pitch = None if plan.pitch is None else plan.pitch[first: first + p_len]
                c_pitchf = None if plan.pitchf is None else plan.pitchf[first: first + p_len]
                skip = min(context // cfg.upp, (p_len - 1) // 2)  # whole context frames: not decoded
                trim = context - skip * cfg.upp
                out = self._chunk_synth(spool.read(start, start + p_len), c_pitch, c_pitchf, options,
                                        draws[i] if draws is not None else None, keep=(skip, p_len - skip),
                                        seed=(options.seed, i), timings=plan.timings, trace=trace,
                                        prefix=f"chunk{i}_")
                start += p_len
                yield out[trim: len(out) - trim]
                mx.clear_cache()  # chunks differ in length: cached buffers of one rarely fit the next
            release_memory()  # the decoder's threads leave freed heap behind (~0.25 GB at 30 s)

    def _chunk_features(self, audio0: np.ndarray, pitchf: np.ndarray | None, index, options: ConversionOptions, *,
                        timings: dict, trace: dict | None, prefix: str) -> np.ndarray:
        """Synthesizer input of one chunk: (p_len, C) features at 100 frames/s after retrieval and protect.

        ``pitchf`` is the f0 from the chunk's first frame on (f0 voices; protect reads it).
        """
        from .retrieval import blend

        cfg = self.voice.cfg
        t0 = time.perf_counter()
        feats = self.encoder.features(audio0.astype(np.float32), version=cfg.version)  # (frames, C) @ 50 Hz
        timings["features"] = timings.get("features", 0.0) + time.perf_counter() - t0
        if trace is not None:
            trace[prefix + "hubert_feats"] = feats[None]
        original = feats
        t0 = time.perf_counter()
        if index is not None and options.index_rate > 0:
            feats = blend(feats, index, options.index_rate)
            if trace is not None:
                trace[prefix + "feats_after_index"] = feats[None]
        timings["retrieval"] = timings.get("retrieval", 0.0) + time.perf_counter() - t0
        feats = repeat_frames(feats)
        # the encoder's 20 ms frames never cover more than the chunk's 10 ms frames, so the
        # reference's min(len // 160, 2·frames) is the feature count
        p_len = min(audio0.shape[0] // WINDOW, feats.shape[0])
        feats = feats[:p_len]
        if cfg.f0 and options.protect < 0.5:
            feats = protect_unvoiced(feats, repeat_frames(original)[:p_len], pitchf[:p_len], options.protect)
        return np.asarray(feats, np.float32)

    def _chunk_synth(self, feats: np.ndarray, pitch, pitchf, options: ConversionOptions, draws: ChunkDraws | None,
                     *, keep: tuple[int, int], seed, timings: dict, trace: dict | None, prefix: str) -> np.ndarray:
        """The synthesizer on one chunk's features (p_len, C) and pitch (p_len,): the audio of frames ``keep``.

        The context frames around ``keep`` go through the text encoder and flow (their attention
        and convolutions see them) but are not decoded: the reference decodes and cuts them off.
        """
        import mlx.core as mx

        from .models.synthesizer import SynthNoise

        cfg = self.voice.cfg
        p_len = feats.shape[0]
        if trace is not None:
            trace[prefix + "synth_p_len"] = np.array([p_len], np.int64)
            if cfg.f0:
                trace[prefix + "synth_pitch"], trace[prefix + "synth_pitchf"] = pitch[None], pitchf[None]
        t0 = time.perf_counter()
        rng = np.random.default_rng(list(seed))
        noise = SynthNoise(
            z_p=draws.z_p.transpose(0, 2, 1) if draws is not None and draws.z_p is not None
            else rng.standard_normal((1, p_len, cfg.inter_channels)),
            sine=(draws.sine if draws is not None and draws.sine is not None
                  else rng.standard_normal((1, p_len * cfg.upp, 1))) if cfg.f0 else None,
        )
        kwargs = {}
        if cfg.f0:
            kwargs = {"pitch": mx.array(np.asarray(pitch, np.int32)[None]), "pitchf": np.asarray(pitchf, np.float32)[None]}
        audio = self.voice.synth.infer(mx.array(feats[None]), mx.array([p_len]), mx.array([options.speaker]),
                                       noise=noise, keep_frames=keep, **kwargs)
        audio = np.asarray(audio[0])
        timings["synthesis"] = timings.get("synthesis", 0.0) + time.perf_counter() - t0
        return audio
