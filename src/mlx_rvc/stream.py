"""Real-time conversion: a streaming converter fed blocks of any size at any rate.

The algorithm is the reference's real-time path (RVC WebUI's realtime GUI), measured in 10 ms
frames (160 samples at 16 kHz, ``upp`` samples at the voice's rate):

* the input is resampled to 16 kHz as it arrives (soxr's streaming resampler) and gathered
  into blocks of ``B`` frames;
* each block slides a window of ``W = E + X + S + B + L`` frames: ``E`` frames of extra past
  context, the crossfade ``X``, one frame ``S`` of SOLA search, the new block, and an optional
  lookahead ``L`` (0 in the reference);
* the window is high-passed like a file conversion (48 Hz, zero phase); content features are
  computed on the whole window (the encoder's attention is global, so they cannot be cached);
  retrieval blends the frames the synthesizer's flow and decoder read;
* pitch is tracked only on the window's tail (the block and the lookahead plus 50 ms, rounded
  up for RMVPE to a whole number of its 32-frame blocks) and written into a cache of past f0, dropping 3 frames
  at the tail's start and 1 at its end, where the tracker lacks context — the reference's cache;
* the synthesizer runs its text encoder over the window, its flow over the 24 frames before
  the decoded ones onwards (the flow's reach), and decodes only the ``X + S + B`` frames that
  follow the context (the reference's ``skip_head`` / ``return_length``);
* the loudness envelope of the input is mixed in over 40 ms frames (the reference's real-time
  RMS mix), then SOLA: the offset within the search frame where the new audio best matches
  (normalised cross-correlation) the tail kept from the previous block, a sin²/cos² crossfade
  over ``X`` frames at that offset, and ``B`` frames out; the next ``X`` frames are kept;
* the output is resampled to the chosen rate as it leaves.

An input sample therefore leaves the converter ``X + S + L`` frames later in the stream
(:attr:`StreamingConverter.delay`), and live, the whole block must arrive before it can be
converted: the algorithmic latency is ``B + X + S + L`` plus the resamplers' look-ahead
(:attr:`StreamingConverter.latency`). The reference caps the crossfade at 40 ms; so does this.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .dsp.chunks import SAMPLE_RATE, WINDOW
from .dsp.filters import highpass
from .dsp.rms import frame_rms
from .errors import MlxRvcError
from .models.synthesizer import FLOW_COUPLINGS, FLOW_KERNEL, FLOW_LAYERS
from .options import ConversionOptions
from .pipeline import ChunkDraws, VoiceConverter, protect_unvoiced, repeat_frames

FRAMES_PER_SECOND = SAMPLE_RATE // WINDOW  # 100 frames of 10 ms
MAX_CROSSFADE_FRAMES = 4  # the reference crossfades at most 40 ms, whatever its crossfade setting
SOLA_SEARCH_FRAMES = 1  # the reference searches the best join within 10 ms
F0_TAIL_EXTRA = 800  # samples at 16 kHz tracked before the new block (50 ms), as the reference
RMVPE_BLOCK = 5120  # samples of 32 RMVPE frames: its tail is a whole number of them, less one hop
F0_DROP_HEAD, F0_DROP_TAIL = 3, 1  # tracked frames not trusted at the tail's two ends (reference)
FLOW_REACH = FLOW_COUPLINGS * FLOW_LAYERS * (FLOW_KERNEL // 2)  # frames each side one flow output reads (24)
RMS_FRAMES = 4  # frames per RMS window of the live loudness mix (40 ms, hop 10 ms: reference)
RMS_FLOOR = 1e-3  # the reference's floor on the converted audio's envelope in the live mix
OUTPUT_LIMIT = 1.0  # converted samples are clipped to ±1 (a stream cannot be rescaled afterwards)


class StreamError(MlxRvcError, ValueError):
    """Streaming settings that cannot work (block too short, rates out of range...)."""


@dataclass(frozen=True)
class StreamSettings:
    """The timing of a stream, in seconds (defaults: the reference's realtime GUI)."""

    block: float = 0.25  # new audio converted per step; the main part of the latency
    crossfade: float = 0.05  # join length (at most 40 ms is used, as in the reference)
    extra: float = 2.5  # past context the content encoder and synthesizer see
    lookahead: float = 0.0  # future context: converts each block this much later, with better edges

    def frames(self) -> tuple[int, int, int, int]:
        """(block, crossfade, extra, lookahead) in 10 ms frames."""
        def n(seconds: float) -> int:
            return int(round(seconds * FRAMES_PER_SECOND))

        crossfade = min(n(self.crossfade), MAX_CROSSFADE_FRAMES, n(self.block))
        return n(self.block), crossfade, n(self.extra), n(self.lookahead)

    def check(self) -> None:
        if not 0.01 <= self.block <= 10:
            raise StreamError(f"block must be 0.01..10 s, got {self.block:g}")
        if not 0.01 <= self.crossfade <= 1:
            raise StreamError(f"crossfade must be 0.01..1 s, got {self.crossfade:g}")
        if not 0 <= self.extra <= 30:
            raise StreamError(f"extra context must be 0..30 s, got {self.extra:g}")
        if not 0 <= self.lookahead <= 2:
            raise StreamError(f"lookahead must be 0..2 s, got {self.lookahead:g}")

    def algorithmic_latency(self) -> float:
        """Seconds from an input sample to its converted output, compute and resampling aside:
        the whole block must arrive, then the crossfade, search and lookahead frames wait."""
        b, x, _, look = self.frames()
        return (b + x + SOLA_SEARCH_FRAMES + look) / FRAMES_PER_SECOND


PRESETS = {
    "reference": StreamSettings(),  # RVC WebUI's realtime defaults
    "low-latency": StreamSettings(block=0.15, crossfade=0.03, extra=1.0),
}


def reference_latency_formula(settings: StreamSettings) -> float:
    """The delay the reference's realtime GUI shows (device latency aside): block + crossfade + 10 ms."""
    return settings.block + settings.crossfade + 0.01


def fade_windows(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade-in, fade-out) of ``n`` samples: sin² and 1 − sin² over a quarter period (sum = 1)."""
    fade_in = np.sin(0.5 * np.pi * np.linspace(0.0, 1.0, n)) ** 2
    return fade_in.astype(np.float32), (1.0 - fade_in).astype(np.float32)


def sola_offset(head: np.ndarray, tail: np.ndarray) -> int:
    """The offset k in ``0..len(head) − len(tail)`` where ``head[k:k+len(tail)]`` best matches
    ``tail``: normalised cross-correlation (only the candidate's energy normalises, as in the
    reference). (N,), (M,) -> int."""
    m = len(tail)
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(head, np.float64), m)
    nom = windows @ np.asarray(tail, np.float64)
    den = np.sqrt(np.sum(windows * windows, axis=1) + 1e-8)
    return int(np.argmax(nom / den))


def envelope(audio: np.ndarray, *, frame: int, frames: int) -> np.ndarray:
    """RMS over ``RMS_FRAMES``-frame windows, hop one ``frame``, stretched to ``frames·frame``
    samples (linear, end points aligned, as the reference's live mix). float32 (frames·frame,)."""
    rms = frame_rms(audio, frame_length=RMS_FRAMES * frame, hop_length=frame)
    n = frames * frame
    positions = np.linspace(0.0, len(rms) - 1, n + 1)[:-1]
    return np.interp(positions, np.arange(len(rms)), rms).astype(np.float32)


class _Resampler:
    """soxr's streaming resampler, or nothing when the rates are equal."""

    def __init__(self, orig_sr: int, target_sr: int):
        self.stream = None
        if orig_sr != target_sr:
            import soxr

            self.stream = soxr.ResampleStream(orig_sr, target_sr, 1, dtype="float32", quality="HQ")
        self.ratio = target_sr / orig_sr

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.stream is None:
            return x
        return self.stream.resample_chunk(x, last=last)

    def held_back(self, orig_sr: int) -> float:
        """Seconds of input this resampler holds back before it can emit (measured on zeros)."""
        if self.stream is None:
            return 0.0
        probe = _Resampler(orig_sr, int(round(orig_sr * self.ratio)))
        out = len(probe(np.zeros(orig_sr, np.float32)))
        return max(0.0, (orig_sr * self.ratio - out) / (orig_sr * self.ratio))


@dataclass
class BlockStats:
    """What converting one block cost."""

    seconds: float  # wall time of the conversion step
    cpu_seconds: float = 0.0  # CPU time of the process (all its threads) during the step
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds


class StreamingConverter:
    """Converts a stream: :meth:`feed` any number of samples, get the converted samples so far.

    Args:
        converter: a :class:`~mlx_rvc.pipeline.VoiceConverter`, or a voice (library name or
            directory) to load one for (``encoder``/``pitch_model`` as for it).
        options: the conversion options; ``pitch``, ``f0_method``, ``index_rate``/``index_path``,
            ``protect``, ``rms_mix_rate``, ``filter_radius``, ``unvoiced``, ``speaker`` and ``seed``
            apply; ``resample_sr`` sets the default output rate; an ``f0_file`` cannot apply live.
        settings: block, crossfade, extra context and lookahead (:class:`StreamSettings`).
        input_rate: rate of the fed samples (Hz).
        output_rate: rate of the returned samples; default ``options.resample_sr`` or the voice's.
        draws: optional source of the synthesizer's random draws by absolute 10 ms frame of the
            16 kHz stream: ``draws(start, stop)`` returns a :class:`~mlx_rvc.pipeline.ChunkDraws`
            (z_p (1, C, n), sine (1, n·upp, 1)); frames before the stream's start are negative.
            Default: block ``k`` draws from ``numpy.random.default_rng([seed, k])``.

    Raises:
        StreamError: settings or rates out of range; options that cannot apply live.
    """

    def __init__(self, converter: VoiceConverter | str | Path, options: ConversionOptions = ConversionOptions(), *,
                 settings: StreamSettings = StreamSettings(), input_rate: int = SAMPLE_RATE,
                 output_rate: int | None = None, encoder=None, pitch_model=None,
                 draws: Callable[[int, int], ChunkDraws] | None = None):
        settings.check()
        for name, rate in (("input", input_rate), ("output", output_rate)):
            if rate is not None and (not isinstance(rate, (int, np.integer)) or not 8000 <= rate <= 384000):
                raise StreamError(f"{name} rate must be an integer 8000..384000 Hz, got {rate!r}")
        if options.f0_file is not None:
            raise StreamError("an f0 file cannot steer a live stream; leave f0_file unset")
        if not isinstance(converter, VoiceConverter):
            converter = VoiceConverter(converter, encoder=encoder, pitch_model=pitch_model, keep_models=True)
        cfg = converter.voice.cfg
        if options.speaker >= cfg.spk_embed_dim:
            raise StreamError(f"speaker {options.speaker} out of range: the voice has {cfg.spk_embed_dim}")
        self.converter = converter
        self.options = options
        self.settings = settings
        self.input_rate = int(input_rate)
        self.voice_rate = cfg.sample_rate
        self.output_rate = int(output_rate) if output_rate is not None else converter.output_rate(options)
        self.upp = cfg.upp  # output samples per 10 ms frame at the voice's rate
        self.block_frames, self.crossfade_frames, self.extra_frames, self.lookahead_frames = settings.frames()
        # decoded frames per block: the crossfade, the search frame and the block itself
        self.return_frames = self.crossfade_frames + SOLA_SEARCH_FRAMES + self.block_frames
        self.window_frames = self.extra_frames + self.return_frames + self.lookahead_frames
        self.index = converter.index_for(options)
        self._draws = draws
        # the block, and with a lookahead the frames it holds back, are re-tracked with context
        tail = (self.block_frames + self.lookahead_frames) * WINDOW + F0_TAIL_EXTRA
        if options.f0_method == "rmvpe":  # whole 32-frame RMVPE blocks, less one hop: len // 160 + 1 = 32·m
            tail = RMVPE_BLOCK * ((tail - 1) // RMVPE_BLOCK + 1) - WINDOW
        self.f0_tail = tail
        self.fade_in, self.fade_out = fade_windows(self.crossfade_frames * self.upp)
        self.reset()

    # -- timing --------------------------------------------------------------------------
    @property
    def delay(self) -> int:
        """Output samples between an input sample and its conversion in the output stream."""
        return int(round((self.crossfade_frames + SOLA_SEARCH_FRAMES + self.lookahead_frames)
                         * self.output_rate / FRAMES_PER_SECOND))

    @property
    def latency(self) -> dict[str, float]:
        """The algorithmic latency in seconds, by part (compute time not included)."""
        parts = {
            "block": self.block_frames / FRAMES_PER_SECOND,
            "crossfade": self.crossfade_frames / FRAMES_PER_SECOND,
            "sola_search": SOLA_SEARCH_FRAMES / FRAMES_PER_SECOND,
            "lookahead": self.lookahead_frames / FRAMES_PER_SECOND,
            "resampling": (_Resampler(self.input_rate, SAMPLE_RATE).held_back(self.input_rate)
                           + _Resampler(self.voice_rate, self.output_rate).held_back(self.voice_rate)),
        }
        parts["total"] = sum(parts.values())
        return parts

    @property
    def block_seconds(self) -> float:
        return self.block_frames / FRAMES_PER_SECOND

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the stream: silent context, empty caches; the next sample starts a new stream."""
        self._window = np.zeros(self.window_frames * WINDOW, np.float32)  # 16 kHz input, newest last
        self._pending = np.zeros(0, np.float32)  # 16 kHz samples not yet a whole block
        self._f0_cache = np.zeros(self.window_frames, np.float64)  # raw f0 (Hz) per window frame
        self._sola_tail = np.zeros(self.crossfade_frames * self.upp, np.float32)
        self._phase = 0.0  # the NSF sine's phase (cycles) at the window's first frame
        self._in = _Resampler(self.input_rate, SAMPLE_RATE)
        self._out = _Resampler(self.voice_rate, self.output_rate)
        self.blocks = 0  # blocks converted since the stream started
        self.stats: list[BlockStats] = []
        self.last_offset = 0  # SOLA's offset (voice-rate samples) at the last join

    def warm_up(self) -> float:
        """Convert one block of silence and forget it (first calls allocate and load); seconds taken."""
        t0 = time.perf_counter()
        self._convert_block(np.zeros(self.block_frames * WINDOW, np.float32))
        self.reset()
        return time.perf_counter() - t0

    # -- streaming -------------------------------------------------------------------------
    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Feed mono (or (N, channels), downmixed) samples at ``input_rate``; returns the converted
        samples completed so far at ``output_rate`` (possibly none), float32 in [-1, 1]."""
        x = np.asarray(samples, np.float32)
        if x.ndim == 2:
            x = x.mean(axis=1)
        if x.ndim != 1:
            raise StreamError(f"samples must be (N,) or (N, channels), got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise StreamError("the input contains NaN or infinite samples")
        return self._push(self._in(x))

    def flush(self) -> np.ndarray:
        """End of the stream: convert what is buffered, followed by silence until every fed
        sample has come out (``delay`` samples later); returns the remaining output. Call
        :meth:`reset` before feeding another stream."""
        out = [self._push(self._in(np.zeros(0, np.float32), last=True))]
        # the partial block, then whole silent blocks until the delayed tail is out
        frames = self.crossfade_frames + SOLA_SEARCH_FRAMES + self.lookahead_frames
        pad = (-len(self._pending)) % (self.block_frames * WINDOW)
        pad += -(-frames // self.block_frames) * self.block_frames * WINDOW
        out.append(self._push(np.zeros(pad, np.float32)))
        out.append(np.clip(self._out(np.zeros(0, np.float32), last=True), -OUTPUT_LIMIT, OUTPUT_LIMIT))
        return np.concatenate(out).astype(np.float32)

    def _push(self, x16: np.ndarray) -> np.ndarray:
        pending = np.concatenate([self._pending, x16]) if len(self._pending) else x16
        step = self.block_frames * WINDOW
        out = []
        n_blocks = len(pending) // step
        for i in range(n_blocks):
            audio = self._convert_block(pending[i * step:(i + 1) * step])
            out.append(np.clip(self._out(audio), -OUTPUT_LIMIT, OUTPUT_LIMIT))
        self._pending = pending[n_blocks * step:].copy()
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)

    # -- one block ---------------------------------------------------------------------------
    def _convert_block(self, block16: np.ndarray) -> np.ndarray:
        """Slide the window by one block and convert it: ``block_frames·upp`` samples at the voice's rate."""
        t_start, cpu_start = time.perf_counter(), time.process_time()
        stages: dict[str, float] = {}
        cfg = self.converter.voice.cfg
        options = self.options
        shift = self.block_frames * WINDOW
        self._window = np.concatenate([self._window[shift:], block16])
        window = highpass(self._window).astype(np.float32)  # as a file conversion filters its input
        w = self.window_frames
        stages["prepare"] = time.perf_counter() - t_start

        pitch = pitchf = None
        if cfg.f0:
            t0 = time.perf_counter()
            pitch, pitchf = self._track_pitch(window)
            stages["pitch"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        feats = self.converter.encoder.features(window, version=cfg.version)  # (frames, C) at 50 fps
        stages["features"] = time.perf_counter() - t0
        if 2 * len(feats) < w:  # the encoder's 20 ms frames stop short of the window's end: repeat the last
            feats = np.concatenate([feats, np.repeat(feats[-1:], -(-w // 2) - len(feats), axis=0)])
        original = feats
        t0 = time.perf_counter()
        if self.index is not None:
            from .retrieval import blend

            # the frames the flow and decoder read: from the flow's reach before the decoded ones
            first = max(0, self.extra_frames - FLOW_REACH) // 2
            feats = feats.copy()
            feats[first:] = blend(feats[first:], self.index, options.index_rate)
        stages["retrieval"] = time.perf_counter() - t0
        feats = repeat_frames(feats)[:w]
        if cfg.f0 and options.protect < 0.5:
            feats = protect_unvoiced(feats, repeat_frames(original)[:w], pitchf, options.protect)

        t0 = time.perf_counter()
        audio = self._synthesize(feats, pitch, pitchf)
        stages["synthesis"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if options.rms_mix_rate < 1:
            lo = self.extra_frames * WINDOW
            source = envelope(window[lo: lo + self.return_frames * WINDOW], frame=WINDOW, frames=self.return_frames)
            # the 16 kHz envelope read at the output's sample times
            src = np.interp(np.arange(len(audio)) * (SAMPLE_RATE / self.voice_rate), np.arange(len(source)),
                            source).astype(np.float32)
            out_env = np.maximum(envelope(audio, frame=self.upp, frames=self.return_frames), np.float32(RMS_FLOOR))
            audio = audio * np.power(src / out_env, np.float32(1 - options.rms_mix_rate))
        audio = self._join(audio.astype(np.float32))
        stages["join"] = time.perf_counter() - t0
        self.stats.append(BlockStats(time.perf_counter() - t_start, time.process_time() - cpu_start, stages))
        self.blocks += 1
        return audio

    def _track_pitch(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track the window's tail, update the f0 cache; (coarse pitch, f0 Hz) of the window's frames."""
        from . import pitch as pitch_mod

        options = self.options
        tail = window[-self.f0_tail:] if self.f0_tail <= len(window) else \
            np.concatenate([np.zeros(self.f0_tail - len(window), np.float32), window])
        f0 = pitch_mod.estimate(tail, method=options.f0_method, rmvpe=self.converter.rmvpe,
                                filter_radius=options.filter_radius, network=self.converter.f0_network)
        n = self.f0_tail // WINDOW + 1  # frame i sits at the tail's sample 160·i; the last at the window's end
        f0 = pitch_mod.align(f0, method=options.f0_method, p_len=n)[:n]
        if len(f0) < n:
            f0 = np.pad(f0, (0, n - len(f0)))
        cache = self._f0_cache
        cache[:-self.block_frames] = cache[self.block_frames:].copy()
        fresh = f0[F0_DROP_HEAD: n - F0_DROP_TAIL]  # ends at the window's last frame
        keep = min(len(fresh), len(cache))
        cache[len(cache) - keep:] = fresh[len(fresh) - keep:]
        return pitch_mod.postprocess(cache, semitones=options.pitch, unvoiced=options.unvoiced)

    def _synthesize(self, feats: np.ndarray, pitch, pitchf) -> np.ndarray:
        """Text encoder over the window, flow from its reach before the decoded frames, decoding
        only the frames after the extra context."""
        import mlx.core as mx

        from .models.synthesizer import SynthNoise

        cfg = self.converter.voice.cfg
        w = self.window_frames
        if self._draws is not None:
            first = (self.blocks + 1) * self.block_frames - w  # absolute frame of the window's start
            d = self._draws(first, first + w)
            z_p, sine = d.z_p.transpose(0, 2, 1), d.sine
        else:
            rng = np.random.default_rng([self.options.seed, self.blocks])
            z_p = rng.standard_normal((1, w, cfg.inter_channels))
            sine = rng.standard_normal((1, w * cfg.upp, 1)) if cfg.f0 else None
        kwargs = {}
        excitation = None
        if cfg.f0:
            pitchf = np.asarray(pitchf, np.float32)
            kwargs = {"pitch": mx.array(np.asarray(pitch, np.int32)[None]), "pitchf": pitchf[None]}
            excitation = self._excitation(pitchf, sine)
        keep = (self.extra_frames, self.extra_frames + self.return_frames)
        audio = self.converter.voice.synth.infer(mx.array(feats[None]), mx.array([w]), mx.array([self.options.speaker]),
                                                 noise=SynthNoise(z_p=z_p, excitation=excitation),
                                                 keep_frames=keep, flow_context=FLOW_REACH, **kwargs)
        return np.asarray(audio[0], np.float32)

    def _excitation(self, pitchf: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """The NSF sine excitation of the window, its phase continuing the stream's.

        The reference restarts the sine's phase at every window, so consecutive blocks disagree
        in phase where they overlap and only SOLA's 10 ms shift can hide it. Here the phase at
        the window's first frame is carried from block to block: a lead frame whose f0 advances
        the phase by exactly that amount is put before the window, and its samples are dropped.
        """
        from .models.nsf import sine_excitation

        cfg = self.converter.voice.cfg
        upp = cfg.upp
        # a frame of f0 hz advances the phase by upp·hz / rate cycles: phase·rate/upp Hz does the carry
        lead = np.float32(self._phase * cfg.sample_rate / upp)
        f0 = np.concatenate([[lead], pitchf]).astype(np.float32)[None]
        draw = np.concatenate([np.zeros((1, upp, 1), np.float32), np.asarray(noise, np.float32)], axis=1)
        excitation = sine_excitation(f0, upp=upp, sample_rate=cfg.sample_rate, noise=draw)[:, upp:]
        # the frames that leave the window before the next block advance the carried phase
        leaving = np.mod(pitchf[: self.block_frames].astype(np.float64) / cfg.sample_rate, 1.0)
        self._phase = float(np.mod(self._phase + upp * leaving.sum(), 1.0))
        return excitation

    def _join(self, audio: np.ndarray) -> np.ndarray:
        """SOLA: align the new audio with the previous block's tail, crossfade, keep the next tail."""
        xf = len(self._sola_tail)
        search = SOLA_SEARCH_FRAMES * self.upp
        offset = sola_offset(audio[: xf + search], self._sola_tail)
        audio = audio[offset:].copy()
        audio[:xf] = audio[:xf] * self.fade_in + self._sola_tail * self.fade_out
        b = self.block_frames * self.upp
        self._sola_tail = audio[b: b + xf].copy()
        self.last_offset = offset
        return audio[:b]


# ----------------------------------------------------------------------------- driving a stream

@dataclass
class StreamReport:
    """How a stream went: per-block compute times against the block's duration."""

    block_seconds: float
    input_seconds: float
    output_rate: int
    compute: list[float]  # seconds per converted block
    cpu: list[float]  # CPU seconds of the process per block: on an idle machine the wall time is at most this
    latency: dict[str, float]  # algorithmic latency by part (s)
    realtime: bool  # fed at real-time pace (else as fast as possible)
    late: int = 0  # blocks whose output was not ready when the previous one had played
    dropped: int = 0  # input blocks skipped because conversion fell more than the backlog behind
    warm_up: float = 0.0  # seconds of the first, untimed block
    stages: dict[str, float] = field(default_factory=dict)  # stage -> median seconds per block

    def as_dict(self) -> dict:
        t = np.asarray(self.compute, np.float64)
        rtf = t / self.block_seconds
        summary = {}
        if t.size:
            for name, values in (("compute_seconds", t), ("realtime_factor", rtf)):
                summary[name] = {"min": float(t.min() if name == "compute_seconds" else rtf.min()),
                                 "median": float(np.median(values)), "p95": float(np.percentile(values, 95)),
                                 "max": float(values.max())}
        return {"block_seconds": self.block_seconds, "input_seconds": self.input_seconds,
                "output_rate": self.output_rate, "blocks": int(t.size), "realtime": self.realtime,
                **summary, "keeps_up": bool(t.size and np.percentile(rtf, 95) < 1),
                "cpu_seconds_p95": float(np.percentile(self.cpu, 95)) if self.cpu else None,
                "late_blocks": self.late, "dropped_blocks": self.dropped, "latency_seconds": self.latency,
                "warm_up_seconds": self.warm_up, "stage_median_seconds": self.stages,
                "realtime_factor_per_block": [float(v) for v in rtf]}


def stream_audio(streamer: StreamingConverter, audio: np.ndarray, *, realtime: bool = False,
                 max_backlog: int = 2) -> tuple[np.ndarray, StreamReport]:
    """Feed ``audio`` (at ``streamer.input_rate``) block by block, as a live input would deliver it.

    Returns the output aligned with the input (the stream's ``delay`` removed, the length of the
    input at the output rate) and a report. With ``realtime`` the blocks are fed at the pace they
    would arrive from a device: a block is late when its output is ready more than one block
    after its input arrived (a live output would have run dry), and when conversion falls more
    than ``max_backlog`` blocks behind, waiting input blocks are dropped (silence out) as a live
    input would overflow.
    """
    x = np.asarray(audio, np.float32)
    warm = streamer.warm_up()
    step = max(1, int(round(streamer.block_seconds * streamer.input_rate)))
    out_step = int(round(streamer.block_seconds * streamer.output_rate))
    pieces: list[np.ndarray] = []
    late = dropped = 0
    counted: list[BlockStats] = []  # the blocks that hold input
    t0 = time.perf_counter()
    for i, lo in enumerate(range(0, len(x), step)):
        due = t0 + (i + 1) * streamer.block_seconds  # when this block has fully arrived live
        if realtime:
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            elif now - due > max_backlog * streamer.block_seconds:
                dropped += 1
                pieces.append(np.zeros(out_step, np.float32))
                continue
        n_stats = len(streamer.stats)
        pieces.append(streamer.feed(x[lo:lo + step]))
        counted.extend(streamer.stats[n_stats:])
        if realtime and time.perf_counter() - due > streamer.block_seconds:
            late += 1
    n_stats = len(streamer.stats)
    pieces.append(streamer.flush())
    # the first blocks the flush converts still hold input (the resampler held it back)
    holding = -(-len(x) // step) - len(counted) - dropped
    counted.extend(streamer.stats[n_stats:][:max(0, holding)])
    y = np.concatenate(pieces)
    n_out = int(round(len(x) * streamer.output_rate / streamer.input_rate))
    y = y[streamer.delay: streamer.delay + n_out]
    if len(y) < n_out:
        y = np.pad(y, (0, n_out - len(y)))
    compute = [s.seconds for s in counted]
    names = counted[0].stages if counted else {}
    stages = {k: float(np.median([s.stages.get(k, 0.0) for s in counted])) for k in names}
    if not realtime:
        late = int(sum(t > streamer.block_seconds for t in compute))
    report = StreamReport(streamer.block_seconds, len(x) / streamer.input_rate, streamer.output_rate, compute,
                          [s.cpu_seconds for s in counted], streamer.latency, realtime, late, dropped, warm, stages)
    return y.astype(np.float32), report


# ----------------------------------------------------------------------------- audio devices

class AudioDeviceError(MlxRvcError, RuntimeError):
    """No usable audio device (PortAudio or sounddevice missing, no device, device refused)."""


def _sounddevice():
    try:
        import sounddevice
    except ModuleNotFoundError:
        raise AudioDeviceError("live audio needs sounddevice: pip install 'mlx-rvc[live]'") from None
    except OSError as exc:  # sounddevice imports but cannot load the PortAudio library
        raise AudioDeviceError(f"PortAudio is not available ({exc}); on Debian/Ubuntu: "
                               "apt-get install libportaudio2") from None
    return sounddevice


def list_devices() -> list[dict]:
    """The audio devices PortAudio sees: index, name, input/output channels, default rate."""
    sd = _sounddevice()
    return [{"index": i, "name": d["name"], "inputs": d["max_input_channels"], "outputs": d["max_output_channels"],
             "default_rate": int(d["default_samplerate"])} for i, d in enumerate(sd.query_devices())]


def _device(sd, device, kind: str) -> tuple[int | str | None, int]:
    """(device, its default rate) for ``kind`` 'input' or 'output'; a clear error when there is none."""
    if device is not None and str(device).isdigit():
        device = int(device)
    try:
        info = sd.query_devices(device, kind)
    except (ValueError, sd.PortAudioError) as exc:
        what = f"audio {kind} device {device!r}" if device is not None else f"default audio {kind} device"
        raise AudioDeviceError(f"no {what} ({exc}); see mlx-rvc live --list-devices") from None
    return device, int(info["default_samplerate"])


@dataclass
class LiveStatus:
    """What the live loop shows after each block."""

    level_db: float  # input level of the block, dBFS
    load: float  # compute time / block duration (≥ 1: cannot keep up)
    blocks: int
    underruns: int  # times the output had nothing to play
    dropped: int  # input blocks dropped because conversion fell behind


def run_live(streamer_for: Callable[[int, int | None], StreamingConverter], *, input_device=None, output_device=None,
             to_file: Path | None = None, subtype: str = "PCM_16",
             on_status: Callable[[LiveStatus], None] | None = None,
             max_backlog: int = 2, stop: Callable[[], bool] | None = None) -> LiveStatus:
    """Convert the microphone to the speakers (or to ``to_file``) until Ctrl-C or ``stop()``.

    ``streamer_for(input_rate, output_rate)`` builds the converter once the devices' rates are
    known (``output_rate`` is None when writing a file: the converter's own rate is used). The
    input arrives in a PortAudio callback and is queued; this thread converts block by block;
    the output callback plays what is ready and silence when nothing is (an underrun). When
    more than ``max_backlog`` blocks wait, the oldest are dropped so the latency cannot grow.
    """
    import queue
    import threading
    from contextlib import ExitStack

    sd = _sounddevice()
    in_dev, in_rate = _device(sd, input_device, "input")
    out_dev, out_rate = (None, None) if to_file is not None else _device(sd, output_device, "output")
    streamer = streamer_for(in_rate, out_rate)
    streamer.warm_up()
    in_block = int(round(streamer.block_seconds * in_rate))
    inbox: queue.Queue[np.ndarray] = queue.Queue()
    outbox = np.zeros(0, np.float32)
    lock = threading.Lock()
    status = LiveStatus(-120.0, 0.0, 0, 0, 0)

    def on_input(indata, frames, time_info, flags) -> None:
        inbox.put(indata[:, 0].copy())

    def on_output(outdata, frames, time_info, flags) -> None:
        nonlocal outbox
        with lock:
            n = min(frames, len(outbox))
            outdata[:n, 0] = outbox[:n]
            outdata[n:, 0] = 0
            outbox = outbox[n:]
            if n < frames and status.blocks:
                status.underruns += 1

    from .audio import AudioWriter

    with ExitStack() as stack:
        try:
            stack.enter_context(sd.InputStream(device=in_dev, channels=1, samplerate=in_rate, blocksize=in_block,
                                               dtype="float32", callback=on_input))
            if to_file is None:
                stack.enter_context(sd.OutputStream(device=out_dev, channels=1, samplerate=out_rate, dtype="float32",
                                                    callback=on_output))
        except sd.PortAudioError as exc:
            raise AudioDeviceError(f"cannot open the audio device: {exc}") from None
        writer = (stack.enter_context(AudioWriter(to_file, streamer.output_rate, subtype=subtype, overwrite=False))
                  if to_file else None)
        try:
            while stop is None or not stop():
                try:
                    block = inbox.get(timeout=0.1)
                except queue.Empty:
                    continue
                while inbox.qsize() > max_backlog:  # fell behind: drop the oldest so latency stays bounded
                    block = inbox.get_nowait()
                    status.dropped += 1
                t0 = time.perf_counter()
                y = streamer.feed(block)
                status.load = (time.perf_counter() - t0) / streamer.block_seconds
                status.level_db = float(20 * np.log10(max(float(np.sqrt(np.mean(block ** 2))), 1e-6)))
                status.blocks += 1
                if writer is not None:
                    writer.write(y)
                else:
                    with lock:
                        outbox = np.concatenate([outbox, y])
                if on_status is not None:
                    on_status(status)
        except KeyboardInterrupt:
            pass
        if writer is not None:
            writer.write(streamer.flush())
    return status
