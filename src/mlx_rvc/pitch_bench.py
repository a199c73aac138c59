"""``mlx-rvc bench pitch``: pitch trackers scored against a known f0 (speech and singing re-synthesised with WORLD).

The set is built from the bundled demo speech: WORLD (pyworld) analyses it once (Harvest f0,
CheapTrick envelope, D4C aperiodicity) and re-synthesises it on contours chosen here, so the true
f0 of every 10 ms frame is the contour given to the synthesiser (0 = unvoiced):

* speech at three registers (the analysed contour × 0.55, × 1, × 1.8);
* singing: the envelope slowed down 2× on a melody of held notes with 5.5 Hz ±50 cent vibrato and
  octave jumps, in a low and a high register;
* breathy versions (aperiodicity raised) and noisy ones (white noise at 20, 10 and 0 dB SNR).

Scores, per method and clip class (the field's measures, as mir_eval defines them): raw pitch
accuracy (voiced reference frames whose estimate is voiced and within 50 cents), raw chroma
accuracy (the same, octave errors forgiven), voicing recall and false alarm, gross pitch error
(frames voiced in both whose estimate is off by more than 20 %), and seconds of compute per second
of audio.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources

import numpy as np

SAMPLE_RATE = 16000  # Hz
FRAME_MS = 10.0
SEED = 20260  # noise and dither draws
VIBRATO_HZ = 5.5
VIBRATO_CENTS = 50.0
SNRS_DB = (20.0, 10.0, 0.0)
RPA_CENTS = 50.0
GROSS_RATIO = 0.2


@dataclass
class Clip:
    name: str  # e.g. "speech_x1.8", "singing_high_snr10"
    kind: str  # speech | singing | breathy | noisy
    audio: np.ndarray  # float32 @ 16 kHz
    f0: np.ndarray  # true f0 per 10 ms frame (frame i at i·160 samples), 0 = unvoiced


def _demo_speech() -> np.ndarray:
    import soundfile as sf

    with resources.as_file(resources.files("mlx_rvc") / "assets" / "demo_speech.flac") as p:
        x, sr = sf.read(str(p), dtype="float64")
    if sr != SAMPLE_RATE:
        raise ValueError(f"demo speech is {sr} Hz, expected {SAMPLE_RATE}")
    return x


def _melody(n: int, voiced: np.ndarray, notes_hz: list[float], note_frames: int) -> np.ndarray:
    t = np.arange(n)
    note = np.asarray(notes_hz)[(t // note_frames) % len(notes_hz)]
    vibrato = VIBRATO_CENTS * np.sin(2 * np.pi * VIBRATO_HZ * t * FRAME_MS / 1000)
    return np.where(voiced, note * 2 ** (vibrato / 1200), 0.0)


def make_dataset() -> list[Clip]:
    """The benchmark's clips (≈ 100 s in all), deterministic."""
    import pyworld

    x = _demo_speech()
    f0, t = pyworld.harvest(x, SAMPLE_RATE, f0_floor=50.0, f0_ceil=1100.0, frame_period=FRAME_MS)
    sp = pyworld.cheaptrick(x, f0, t, SAMPLE_RATE)
    ap = pyworld.d4c(x, f0, t, SAMPLE_RATE)
    voiced = f0 > 0
    rng = np.random.RandomState(SEED)

    def synth(contour, env, aper) -> np.ndarray:
        y = pyworld.synthesize(np.ascontiguousarray(contour), np.ascontiguousarray(env), np.ascontiguousarray(aper),
                               SAMPLE_RATE, FRAME_MS)
        n = (len(contour) - 1) * int(SAMPLE_RATE * FRAME_MS / 1000) + 1
        y = np.pad(y, (0, max(0, n - len(y))))[:n]
        return (0.5 * y / max(np.max(np.abs(y)), 1e-9)).astype(np.float32)

    clips: list[Clip] = []
    for factor in (0.55, 1.0, 1.8):
        c = f0 * factor
        clips.append(Clip(f"speech_x{factor:g}", "speech", synth(c, sp, ap), c))
    slow = np.arange(2 * len(f0)) // 2  # each analysis frame held for 20 ms
    sp2, ap2, v2 = sp[slow], ap[slow], voiced[slow]
    low = _melody(len(slow), v2, [110.0, 220.0, 146.8, 98.0, 196.0, 130.8], 60)  # octave jumps 110→220, 98→196
    high = _melody(len(slow), v2, [440.0, 880.0, 523.3, 392.0, 784.0, 659.3], 60)
    clips.append(Clip("singing_low", "singing", synth(low, sp2, ap2), low))
    clips.append(Clip("singing_high", "singing", synth(high, sp2, ap2), high))
    breathy_ap = np.sqrt(ap)  # aperiodicity raised towards 1: more noise in every band
    clips.append(Clip("breathy_speech", "breathy", synth(f0, sp, breathy_ap), f0))
    clips.append(Clip("breathy_singing", "breathy", synth(low, sp2, np.sqrt(ap2)), low))
    for base in (clips[1], clips[3]):
        for snr in SNRS_DB if base.kind == "speech" else (10.0,):
            power = np.mean(base.audio.astype(np.float64) ** 2)
            noise = rng.standard_normal(base.audio.size) * np.sqrt(power / 10 ** (snr / 10))
            y = base.audio + noise
            y = (0.5 * y / np.max(np.abs(y))).astype(np.float32)
            clips.append(Clip(f"{base.name}_snr{snr:g}", "noisy", y, base.f0))
    return clips


def scores(truth: np.ndarray, est: np.ndarray) -> dict[str, float]:
    """RPA, RCA, voicing recall / false alarm, gross pitch error over common frames (counts kept for pooling)."""
    n = min(len(truth), len(est))
    ref, e = np.asarray(truth[:n], np.float64), np.asarray(est[:n], np.float64)
    rv, ev = ref > 0, e > 0
    both = rv & ev
    cents = np.zeros(n)
    cents[both] = 1200 * np.log2(e[both] / ref[both])
    chroma = np.abs(cents - 1200 * np.round(cents / 1200))
    return {
        "frames": int(n), "ref_voiced": int(rv.sum()), "ref_unvoiced": int((~rv).sum()),
        "hits": int(np.sum(both & (np.abs(cents) <= RPA_CENTS))),
        "chroma_hits": int(np.sum(both & (chroma <= RPA_CENTS))),
        "voiced_hits": int(both.sum()), "false_alarms": int(np.sum(ev & ~rv)),
        "gross": int(np.sum(both & (np.abs(e / np.where(ref > 0, ref, 1) - 1) > GROSS_RATIO))),
    }


def summarise(counts: list[dict[str, float]]) -> dict[str, float]:
    tot = {k: sum(c[k] for c in counts) for k in counts[0]}
    rv, ru, both = max(tot["ref_voiced"], 1), max(tot["ref_unvoiced"], 1), max(tot["voiced_hits"], 1)
    return {"rpa": tot["hits"] / rv, "rca": tot["chroma_hits"] / rv, "voicing_recall": tot["voiced_hits"] / rv,
            "voicing_false_alarm": tot["false_alarms"] / ru, "gross_error": tot["gross"] / both,
            "frames": tot["frames"]}


def run(methods: list[str], *, network=None, rmvpe=None, clips: list[Clip] | None = None) -> dict:
    """Score each method on every clip; ``network(method)`` / ``rmvpe()`` give loaded models (default: the library's)."""
    from . import pitch

    clips = clips if clips is not None else make_dataset()
    if rmvpe is None:
        from .store import load_pitch_model

        loaded = []

        def rmvpe():
            if not loaded:
                loaded.append(load_pitch_model())
            return loaded[0]
    seconds = sum(c.audio.size for c in clips) / SAMPLE_RATE
    out = {"seconds": seconds, "clips": [c.name for c in clips], "methods": {}}
    for method in methods:
        cache: dict[str, object] = {}

        def net(m):
            if m not in cache:
                from .store import load_f0_network

                cache[m] = network(m) if network is not None else load_f0_network(m)
            return cache[m]

        pitch.estimate(clips[0].audio[:SAMPLE_RATE], method=method, rmvpe=rmvpe, network=net)  # warm-up
        per_kind: dict[str, list] = {}
        elapsed = 0.0
        estimates = {}
        for c in clips:
            t0 = time.perf_counter()
            f0 = pitch.estimate(c.audio, method=method, rmvpe=rmvpe, network=net)
            elapsed += time.perf_counter() - t0
            if method == "pm":
                f0 = pitch.align(f0, method=method, p_len=len(c.f0))
            estimates[c.name] = f0
            per_kind.setdefault(c.kind, []).append(scores(c.f0, f0))
        everything = [s for v in per_kind.values() for s in v]
        out["methods"][method] = {"all": summarise(everything), **{k: summarise(v) for k, v in per_kind.items()},
                                  "seconds_per_second": elapsed / seconds}
        out.setdefault("estimates", {})[method] = estimates
    return out


def available_methods() -> tuple[list[str], dict[str, str]]:
    """Methods that can run here, and why the others cannot (rmvpe, fcpe and crepe need imported models)."""
    from . import pitch, store

    ok, missing = ["pm", "harvest", "dio"], {}
    if store.list_models("rmvpe"):
        ok.insert(0, "rmvpe")
    else:
        missing["rmvpe"] = "no RMVPE model in the library"
    for method in pitch.NETWORK_METHODS:
        kind, capacity = store.F0_NETWORKS[method]
        if any(capacity is None or m.config.get("capacity") == capacity for m in store.list_models(kind)):
            ok.append(method)
        else:
            missing[method] = f"no {kind} {capacity or ''} model in the library".replace("  ", " ")
    return ok, missing


def compare_reference(clips: list[Clip], ours: dict[str, dict[str, np.ndarray]], reference) -> dict:
    """The PyTorch packages' scores on the same clips, and how closely mlx-rvc's f0 follows theirs."""
    out = {}
    for method in ("fcpe", "crepe", "crepe-tiny"):
        if not all(f"{method}/{c.name}" in reference.files for c in clips):
            continue
        ref = {c.name: reference[f"{method}/{c.name}"] for c in clips}
        entry = {"all": summarise([scores(c.f0, ref[c.name]) for c in clips])}
        if f"time/{method}" in reference.files:
            entry["seconds_per_second"] = float(reference[f"time/{method}"]) / (sum(c.audio.size for c in clips) / SAMPLE_RATE)
        if method in ours:
            frames = same = voiced = close = 0
            worst = 0.0
            for c in clips:
                a, b = np.asarray(ours[method][c.name]), np.asarray(ref[c.name])
                frames += a.size
                same += int(np.sum((a > 0) == (b > 0)))
                both = (a > 0) & (b > 0)
                d = np.abs(1200 * np.log2(a[both] / b[both]))
                voiced += int(both.sum())
                close += int(np.sum(d < 1.0))
                worst = max(worst, float(d.max()) if d.size else 0.0)
            entry["parity"] = {"frames": frames, "voicing_identical": same / frames,
                               "voiced_within_1_cent": close / max(voiced, 1), "max_cents": worst}
        out[method] = entry
    return out


def cli_run(*, methods: str | None, save_clips=None, reference=None, estimates=None, json_out=None) -> dict:
    """``mlx-rvc bench pitch``: score, print a table, optionally write JSON (see the module doc)."""
    import json
    from pathlib import Path

    clips = make_dataset()
    if save_clips is not None:
        data = {}
        for c in clips:
            data["audio/" + c.name], data["f0/" + c.name] = c.audio, c.f0.astype(np.float32)
        np.savez_compressed(save_clips, **data)
    ok, missing = available_methods()
    wanted = [m.strip() for m in methods.split(",")] if methods else ok
    unknown = [m for m in wanted if m not in ok]
    if unknown:
        raise ValueError(f"cannot run {', '.join(unknown)}: "
                         + "; ".join(f"{m}: {missing.get(m, 'unknown method')}" for m in unknown))
    cached = {}
    if estimates is not None and Path(estimates).is_file():
        data = np.load(estimates)
        cached = {m: {c.name: data[f"{m}/{c.name}"] for c in clips} for m in wanted
                  if all(f"{m}/{c.name}" in data.files for c in clips)}
        cached_time = {m: float(data[f"time/{m}"]) for m in cached if f"time/{m}" in data.files}
    result = run([m for m in wanted if m not in cached], clips=clips)
    found = result.pop("estimates", {})
    seconds = result["seconds"]
    for m, est in cached.items():
        per_kind: dict[str, list] = {}
        for c in clips:
            per_kind.setdefault(c.kind, []).append(scores(c.f0, est[c.name]))
        everything = [s for v in per_kind.values() for s in v]
        result["methods"][m] = {"all": summarise(everything), **{k: summarise(v) for k, v in per_kind.items()},
                                "seconds_per_second": cached_time.get(m, float("nan")) / seconds}
    found.update(cached)
    result["methods"] = {m: result["methods"][m] for m in wanted}
    result["not_run"] = {m: why for m, why in missing.items() if m not in wanted}
    if estimates is not None:
        data = {f"{m}/{name}": np.asarray(f, np.float32) for m, per in found.items() for name, f in per.items()}
        data.update({f"time/{m}": np.float64(result["methods"][m]["seconds_per_second"] * seconds) for m in found})
        np.savez_compressed(estimates, **data)
    if reference is not None:
        result["reference"] = compare_reference(clips, found, np.load(reference))
    print(f"{'method':<11} {'RPA':>6} {'RCA':>6} {'recall':>7} {'f.alarm':>7} {'GPE':>6} {'s/s audio':>9}")
    rows = [(m, r) for m, r in result["methods"].items()]
    rows += [(f"{m} (torch)", r) for m, r in result.get("reference", {}).items()]
    for m, r in rows:
        a = r["all"]
        print(f"{m:<11} {a['rpa']:6.1%} {a['rca']:6.1%} {a['voicing_recall']:7.1%} {a['voicing_false_alarm']:7.1%} "
              f"{a['gross_error']:6.1%} {r.get('seconds_per_second', float('nan')):9.3f}")
    for m, r in result.get("reference", {}).items():
        if "parity" in r:
            p = r["parity"]
            print(f"{m} vs its PyTorch package: voicing identical on {p['voicing_identical']:.4%} of {p['frames']} frames, "
                  f"{p['voiced_within_1_cent']:.4%} of voiced frames within 1 cent (max {p['max_cents']:.4f} cents)")
    if json_out is not None:
        Path(json_out).write_text(json.dumps(result, indent=2) + "\n")
    return result
