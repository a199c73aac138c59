"""Fuzz the checkpoint reader and the audio loader with mutated real-format files.

Every input is derived deterministically from ``(--seed, index)``, so any finding is reproduced
with ``--replay INDEX``. Seeds are the project's own real-format files: the voice ``.pth`` files,
``hubert_base.pt`` and the small tensor checkpoints of ``tests/fixtures`` (zip and legacy
pickle), and short wav/flac/mp3/ogg clips made here with ffmpeg (or soundfile when ffmpeg is
missing). Mutations: bit flips, interesting bytes and integers (lengths, counts, offsets), cuts,
deleted/duplicated spans, splices of two files; for zip checkpoints also the object pickle
mutated *inside* a well-formed archive (so the CRC check does not stop it before the unpickler).

An outcome is one of: ``ok`` (read), ``refused`` (the project's own one-line error:
``MlxRvcError`` or ``FileNotFoundError``), ``crash`` (anything else: a bug), ``hang`` (no answer
within ``--timeout`` seconds: the worker is killed and restarted). Each worker's peak resident
memory is reported. Findings are written with their index to the JSON report.

    python benchmarks/fuzz_inputs.py --inputs 1000000 --workers 2 --json benchmarks/results/fuzz.json

The audio loader falls back to ffmpeg for files libsndfile refuses; an ffmpeg process per input
costs ~50x a libsndfile read, so only ``--ffmpeg-share`` of the audio inputs (default 1 %) may
take that path, the rest stop at the libsndfile refusal with ffmpeg hidden.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
STARTUP_TIMEOUT = 600.0  # seconds a worker may take to import and make its seeds before its first input
SMALL_SEED = 64 << 10  # seeds up to this size are read in a few ms; larger ones (real voices) take ~50 ms
LARGE_SHARE = 0.01  # share of inputs mutated from the large seeds, so that 10^6 inputs fit in an hour on 2 shared cores
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF)
INTERESTING_INTS = (0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
                    0x80000000, 0xFFFFFFFF, 2**62, 2**63 - 1, 2**64 - 1)


# --- seeds ----------------------------------------------------------------------------------------

def checkpoint_seeds() -> list[tuple[str, bytes]]:
    paths = sorted((FIXTURES / "models" / "weights").glob("*.pth"))[:4]
    paths += [FIXTURES / "models" / "hubert_base.pt", FIXTURES / "checkpoints" / "tensors_zip.pt",
              FIXTURES / "checkpoints" / "tensors_legacy.pt"]
    return [(p.name, p.read_bytes()) for p in paths if p.is_file()]


def audio_seeds(folder: Path) -> list[tuple[str, bytes]]:
    import numpy as np
    import soundfile as sf

    t = np.arange(8000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    stereo = np.stack([tone, tone[::-1]], axis=1)
    made = []
    for name, data, sr, subtype in (("a.wav", tone, 16000, "PCM_16"), ("b.wav", stereo, 44100, "FLOAT"),
                                    ("c.flac", tone, 22050, "PCM_24"), ("d.ogg", tone, 16000, "VORBIS"),
                                    ("e.mp3", tone, 16000, "MPEG_LAYER_III")):
        try:
            sf.write(folder / name, data, sr, subtype=subtype)
            made.append(folder / name)
        except Exception:  # noqa: BLE001 - a libsndfile without that codec
            pass
    if shutil.which("ffmpeg"):
        src = folder / "a.wav"
        for name, args in (("f.mp3", ["-b:a", "32k"]), ("g.m4a", ["-c:a", "aac", "-b:a", "32k"])):
            r = subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *args, str(folder / name)],
                               capture_output=True)
            if r.returncode == 0:
                made.append(folder / name)
    return [(p.name, p.read_bytes()) for p in made]


# --- mutations ------------------------------------------------------------------------------------

def _position(rng: random.Random, n: int) -> int:
    if n == 0:
        return 0
    return rng.randrange(min(n, 4096)) if rng.random() < 0.6 else rng.randrange(n)  # headers live early


def mutate(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 5))):
        op = rng.randrange(8)
        n = len(b)
        if n == 0:
            b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
            continue
        if op == 0:  # bit flips
            for _ in range(rng.randrange(1, 9)):
                i = _position(rng, n)
                b[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # interesting byte
            b[_position(rng, n)] = rng.choice(INTERESTING_BYTES)
        elif op == 2:  # interesting integer, 2/4/8 bytes, either endianness
            width = rng.choice((2, 4, 8))
            value = rng.choice(INTERESTING_INTS) % (1 << (8 * width))
            if rng.random() < 0.3:
                value = (value + rng.choice((-1, 1))) % (1 << (8 * width))
            raw = value.to_bytes(width, rng.choice(("little", "big")))
            i = _position(rng, n)
            b[i:i + width] = raw
        elif op == 3:  # cut
            del b[_position(rng, n):]
        elif op == 4:  # delete a span
            i = _position(rng, n)
            del b[i:i + rng.randrange(1, 64)]
        elif op == 5:  # duplicate a span
            i = _position(rng, n)
            span = b[i:i + rng.randrange(1, 64)]
            j = _position(rng, n)
            b[j:j] = span
        elif op == 6:  # random bytes
            i = _position(rng, n)
            b[i:i + rng.randrange(1, 16)] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        else:  # splice with another seed
            other = rng.choice(others)
            i = _position(rng, n)
            j = rng.randrange(max(len(other), 1))
            b[i:] = other[j:j + rng.randrange(1, 4096)] + b[i:]
    return bytes(b)


def _zip_parts(data: bytes) -> list[tuple[str, bytes]] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return [(i.filename, z.read(i.filename)) for i in z.infolist()]
    except Exception:  # noqa: BLE001
        return None


def mutate_zip_inside(parts: list[tuple[str, bytes]], rng: random.Random, others: list[bytes]) -> bytes:
    """A well-formed archive whose object pickle (or one storage entry) is mutated."""
    pkl = [i for i, (name, _) in enumerate(parts) if name.endswith("data.pkl")]
    which = pkl[0] if pkl and rng.random() < 0.85 else rng.randrange(len(parts))
    missing = rng.randrange(len(parts)) if rng.random() < 0.02 else -1  # sometimes an entry goes missing
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for i, (name, raw) in enumerate(parts):
            if i == which:
                raw = mutate(raw, rng, others)
            if i != missing:
                z.writestr(name, raw)
    return out.getvalue()


def make_input(kind: str, seed: int, index: int, seeds: list[tuple[str, bytes]],
               zips: dict[int, list], ) -> tuple[str, bytes]:
    rng = random.Random(f"{seed}:{kind}:{index}")
    small = [i for i, (_, d) in enumerate(seeds) if len(d) <= SMALL_SEED]
    large = [i for i in range(len(seeds)) if i not in small]
    k = rng.choice(large if large and (not small or rng.random() < LARGE_SHARE) else small)
    name, data = seeds[k]
    others = [d for _, d in seeds]
    if kind == "checkpoint" and k in zips and rng.random() < 0.5:
        return name, mutate_zip_inside(zips[k], rng, others)
    return name, mutate(data, rng, others)


# --- targets ------------------------------------------------------------------------------------

def run_checkpoint(path: Path, data: bytes, name: str) -> None:
    from mlx_rvc.checkpoint import read_checkpoint

    path.write_bytes(data)
    read_checkpoint(path)


def run_audio(path: Path, data: bytes, name: str) -> None:
    from mlx_rvc.audio import load_audio

    path.write_bytes(data)
    load_audio(path)


def classify(exc: BaseException) -> str:
    from mlx_rvc.errors import MlxRvcError

    return "refused" if isinstance(exc, (MlxRvcError, FileNotFoundError)) else "crash"


OUTCOMES = ("ok", "refused", "crash")


def worker(wid: int, kind: str, seed: int, indices: range, progress, current, tallies, results_q,
           ffmpeg_share: float, workdir: str) -> None:
    os.nice(0)
    import mlx_rvc.audio as audio_mod  # noqa: F401 - imported before timing starts

    seeds = checkpoint_seeds() if kind == "checkpoint" else audio_seeds(Path(workdir) / "seeds")
    zips = {i: p for i, (_, d) in enumerate(seeds) if d[:2] == b"PK" and (p := _zip_parts(d))}
    target = run_checkpoint if kind == "checkpoint" else run_audio
    which = shutil.which
    counts = {"ok": 0, "refused": 0, "crash": 0}
    crashes: dict[str, dict] = {}
    for index in indices:
        current[wid] = index
        name, data = make_input(kind, seed, index, seeds, zips)
        path = Path(workdir) / f"w{wid}{Path(name).suffix}"
        if kind == "audio":  # hide ffmpeg from all but a share of the inputs
            allow = random.Random(f"{seed}:ff:{index}").random() < ffmpeg_share
            shutil.which = which if allow else (lambda cmd, *a, **k: None if cmd in ("ffmpeg", "ffprobe") else which(cmd, *a, **k))
            import mlx_rvc.audio
            mlx_rvc.audio.shutil.which = shutil.which
        try:
            target(path, data, name)
            outcome = "ok"
        except Exception as exc:  # noqa: BLE001 - what the fuzzer classifies
            outcome = classify(exc)
            if outcome == "crash":
                key = f"{type(exc).__name__}: {str(exc)[:100]}"
                import traceback

                tb = traceback.extract_tb(exc.__traceback__)
                where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
                key = f"{type(exc).__name__} at {where}"
                if key not in crashes:
                    crashes[key] = {"class": key, "message": str(exc)[:200], "first_index": index, "count": 0}
                    results_q.put({"worker": wid, "new_crash": dict(crashes[key])})
                crashes[key]["count"] += 1
        counts[outcome] += 1
        tallies[wid * 3 + OUTCOMES.index(outcome)] += 1  # survives the worker being killed
        progress[wid] += 1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    results_q.put({"worker": wid, "counts": counts, "crashes": list(crashes.values()), "peak_rss_bytes": rss})


def run(kind: str, total: int, workers: int, seed: int, timeout: float, ffmpeg_share: float,
        start: int = 0) -> dict:
    ctx = mp.get_context("fork")
    workdir = tempfile.mkdtemp(prefix="mlx-rvc-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    (Path(workdir) / "seeds").mkdir()
    progress = ctx.Array("q", workers, lock=False)
    current = ctx.Array("q", workers, lock=False)
    tallies = ctx.Array("q", workers * 3, lock=False)
    results_q = ctx.Queue()
    per = -(-total // workers)
    todo = {w: range(start + w * per, start + min(total, (w + 1) * per)) for w in range(workers)}
    procs: dict[int, mp.Process] = {}
    hangs = []
    t0 = time.perf_counter()

    def spawn(w: int, r: range) -> None:
        p = ctx.Process(target=worker, args=(w, kind, seed, r, progress, current, tallies, results_q, ffmpeg_share, workdir))
        p.start()
        procs[w] = p

    for w, r in todo.items():
        current[w] = r.start - 1
        spawn(w, r)
    last = {w: (current[w], time.perf_counter()) for w in procs}
    collected = []
    resumed_counts = {w: 0 for w in procs}
    while procs:
        time.sleep(0.5)
        while not results_q.empty():
            collected.append(results_q.get())
        for w, p in list(procs.items()):
            if not p.is_alive():
                p.join()
                if p.exitcode != 0:  # died without reporting: a hard crash (segfault, abort)
                    idx = current[w]
                    hangs.append({"index": idx, "kind": f"worker died with exit code {p.exitcode}"})
                    rest = range(idx + 1, todo[w].stop)
                    progress[w] += 1
                    del procs[w]
                    if len(rest):
                        todo[w] = rest
                        spawn(w, rest)
                        last[w] = (current[w], time.perf_counter())
                else:
                    del procs[w]
                continue
            idx = current[w]
            starting = idx == todo[w].start - 1  # imports and seed files: no input yet
            if idx != last[w][0]:
                last[w] = (idx, time.perf_counter())
            elif time.perf_counter() - last[w][1] > (STARTUP_TIMEOUT if starting else timeout):
                p.kill()
                p.join()
                hangs.append({"index": idx, "kind": f"no answer within {timeout:g} s"})
                progress[w] += 1
                rest = range(idx + 1, todo[w].stop)
                del procs[w]
                if len(rest):
                    todo[w] = rest
                    spawn(w, rest)
                    last[w] = (current[w], time.perf_counter())
        done = sum(progress)
        elapsed = time.perf_counter() - t0
        if int(elapsed) % 60 == 0 or not procs:
            print(f"{kind}: {done}/{total} inputs, {elapsed:.0f} s, {done / max(elapsed, 1e-9):.0f}/s", flush=True)
    while not results_q.empty():
        collected.append(results_q.get())
    shutil.rmtree(workdir, ignore_errors=True)
    counts = {o: sum(tallies[w * 3 + i] for w in range(workers)) for i, o in enumerate(OUTCOMES)}
    crashes: dict[str, dict] = {}
    for r in collected:
        if "new_crash" in r:  # a class first seen by a worker that may later have been killed
            c = r["new_crash"]
            crashes.setdefault(c["class"], {**c, "count": 0})
    for r in collected:
        for c in r.get("crashes", ()):
            if c["class"] in crashes:
                crashes[c["class"]]["count"] += c["count"]
            else:
                crashes[c["class"]] = c
    elapsed = time.perf_counter() - t0
    rss = [r["peak_rss_bytes"] for r in collected if "peak_rss_bytes" in r]
    return {"target": kind, "inputs": total, "seed": seed, "seconds": round(elapsed, 1),
            "inputs_per_second": round(total / elapsed, 1), "outcomes": counts, "hangs_or_deaths": hangs,
            "crash_classes": sorted(crashes.values(), key=lambda c: -c["count"]),
            "peak_rss_bytes_per_worker": max(rss, default=0),
            "timeout_seconds": timeout, "ffmpeg_share": ffmpeg_share if kind == "audio" else None}


def replay(kind: str, seed: int, index: int, out: Path) -> None:
    folder = Path(tempfile.mkdtemp())
    (folder / "seeds").mkdir()
    seeds = checkpoint_seeds() if kind == "checkpoint" else audio_seeds(folder / "seeds")
    zips = {i: p for i, (_, d) in enumerate(seeds) if d[:2] == b"PK" and (p := _zip_parts(d))}
    name, data = make_input(kind, seed, index, seeds, zips)
    out.write_bytes(data)
    print(f"wrote input {index} (from {name}) to {out}")
    (run_checkpoint if kind == "checkpoint" else run_audio)(folder / f"x{Path(name).suffix}", data, name)
    print("read without error")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=10000, help="inputs per target")
    ap.add_argument("--targets", default="checkpoint,audio")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds one input may take before it is a hang")
    ap.add_argument("--ffmpeg-share", type=float, default=0.01)
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("--replay", type=int, help="write input INDEX of the first target to replay.bin and read it")
    args = ap.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.replay is not None:
        replay(targets[0], args.seed, args.replay, Path("replay.bin"))
        return
    reports = [run(t, args.inputs, args.workers, args.seed, args.timeout, args.ffmpeg_share) for t in targets]
    report = {"python": sys.version.split()[0], "cpu_count": os.cpu_count(), "workers": args.workers,
              "targets": reports}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".partial")
        tmp.write_text(text + "\n")
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
