"""Soak the web app: several browser tabs converting, one after another, for a long time.

Serves ``mlx-rvc ui`` in a subprocess on a library of the small test models (two voices: v2 48k
with f0, RMVPE and an index; v1 40k without f0), opens ``--tabs`` Chromium tabs with Playwright
and, round after round, has every tab upload a clip (alternating lengths and voices), convert,
and download the result. Each result is checked: it decodes, has the voice's rate and the
input's duration (± 50 ms), finite samples. The server's resident memory (with its children)
is sampled every ``--sample`` seconds, and its log is scanned for tracebacks and errors.

    python benchmarks/soak_webui.py --minutes 30 --tabs 3 --json benchmarks/results/soak_webui.json

Needs the ``ui`` extra, Playwright and a Chromium (``/usr/bin/chromium`` or ``$MLX_RVC_CHROMIUM``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "tests" / "fixtures" / "models"
INDEX_V2 = ROOT / "tests" / "fixtures" / "added_IVF10_Flat_nprobe_1_oracle_e2e_v2_48k_f0_rmvpe_v2.index"
CHROMIUM = os.environ.get("MLX_RVC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
VOICES = {"alice": 48000, "bob": 40000}  # name -> rate of what it writes


def build_library(home: Path) -> None:
    os.environ["MLX_RVC_HOME"] = str(home)
    from mlx_rvc.importer import import_model

    import_model(MODELS / "hubert_base_768", name="hubert_base")
    import_model(MODELS / "hubert_base.pt", name="hubert_v1")
    import_model(MODELS / "rmvpe.pt", name="rmvpe")
    import_model(MODELS / "weights" / "v2_48k_f0.pth", name="alice", index=INDEX_V2)
    import_model(MODELS / "weights" / "v1_40k_nof0.pth", name="bob")


def clips(folder: Path) -> list[tuple[Path, float]]:
    import soundfile as sf

    out = []
    for seconds, sr in ((2.0, 44100), (4.5, 48000), (1.0, 16000)):
        t = np.arange(int(seconds * sr)) / sr
        phase = 2 * np.pi * np.cumsum(170 + 40 * np.sin(2 * np.pi * 1.3 * t)) / sr
        x = (0.3 * (np.sin(phase) + 0.4 * np.sin(2 * phase)) * np.minimum(1, np.minimum(t, seconds - t) * 10))
        path = folder / f"clip_{seconds:g}s.wav"
        sf.write(path, x.astype(np.float32), sr)
        out.append((path, seconds))
    return out


def rss_tree(pid: int) -> int:
    """Resident bytes of a process and its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration, ValueError):
            pass
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_lines(log, count: int, *, timeout: float) -> None:
    """Wait until the status log holds ``count`` finished conversions ("wrote" or "error:" lines).

    Counted here, not by a regular expression in the page: a pattern repeated ``count`` times over
    the whole log backtracks exponentially in the browser as the log grows (a renderer spun for
    minutes at the fourth conversion).
    """
    deadline = time.monotonic() + timeout
    while len(re.findall(r"\bwrote\b|error:", log.input_value())) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the status log did not reach {count} finished conversions in {timeout:g} s")
        time.sleep(0.25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--tabs", type=int, default=3)
    ap.add_argument("--sample", type=float, default=15.0, help="seconds between memory samples")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import signal

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))  # unwind: the server is stopped in `finally`
    from playwright.sync_api import expect, sync_playwright
    import soundfile as sf

    work = Path(tempfile.mkdtemp(prefix="mlx-rvc-soak-"))
    build_library(work / "home")
    inputs = clips(work)
    port = free_port()
    log_path = work / "server.log"
    env = {**os.environ, "MLX_RVC_HOME": str(work / "home"), "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "-m", "mlx_rvc", "ui", "--port", str(port)], env=env,
                              stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    samples: list[tuple[float, int]] = []
    results = {"converted": 0, "wrong": [], "page_errors": []}
    t_start = time.monotonic()
    try:
        for _ in range(240):  # the server imports MLX and Gradio first
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new",
                                                                         "--disable-gpu", "--no-first-run"])
            tabs = []
            for i in range(args.tabs):
                ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
                page = ctx.new_page()
                page.set_default_timeout(600_000)
                page.goto(url)
                page.wait_for_selector("#voice-info table")
                tabs.append(page)
            t_start = time.monotonic()
            next_sample = 0.0
            done_per_tab = [0] * len(tabs)
            round_no = 0
            while time.monotonic() - t_start < args.minutes * 60:
                jobs = []
                for i, page in enumerate(tabs):
                    voice = list(VOICES)[(round_no + i) % len(VOICES)]
                    clip, seconds = inputs[(round_no + i) % len(inputs)]
                    page.locator("#voice input").click()
                    page.get_by_role("option", name=voice, exact=True).click()
                    clear = page.locator("#input-audio button[aria-label='Clear']")
                    if clear.count() and clear.first.is_visible():
                        clear.first.click()
                    page.locator("#input-audio input[type=file]").set_input_files(str(clip))
                    # the upload's handler queues behind the other tabs' conversions on a busy CPU
                    expect(page.locator("#input-info")).to_contain_text(clip.name, timeout=600_000)
                    page.locator("#convert-btn").click()
                    jobs.append((i, page, voice, seconds))
                for i, page, voice, seconds in jobs:
                    done_per_tab[i] += 1
                    wait_for_lines(page.locator("#status-log textarea"), done_per_tab[i], timeout=600.0)
                    if page.locator("#error").is_visible():
                        results["page_errors"].append(page.locator("#error").inner_text()[:200])
                        continue
                    href = page.locator("#download a[href]").first.get_attribute("href")
                    body = page.request.get(href).body()
                    data, sr = sf.read(io.BytesIO(body), dtype="float32")
                    ok = sr == VOICES[voice] and abs(len(data) / sr - seconds) <= 0.05 and np.isfinite(data).all()
                    if ok:
                        results["converted"] += 1
                    else:
                        results["wrong"].append({"voice": voice, "rate": sr, "seconds": len(data) / sr,
                                                 "expected_seconds": seconds})
                round_no += 1
                now = time.monotonic() - t_start
                if now >= next_sample:
                    samples.append((round(now, 1), rss_tree(server.pid)))
                    next_sample = now + args.sample
                    print(f"{now / 60:5.1f} min: {results['converted']} converted, {len(results['wrong'])} wrong, "
                          f"{len(results['page_errors'])} page errors, server RSS {samples[-1][1] / 2**20:.0f} MiB",
                          flush=True)
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    elapsed = time.monotonic() - t_start
    log_text = log_path.read_text(errors="replace")
    bad_lines = [line for line in log_text.splitlines() if re.search(r"Traceback|ERROR|Exception", line)]
    rss = [r for _, r in samples]
    k = max(1, len(rss) // 6)
    report = {
        "minutes": round(elapsed / 60, 1), "tabs": args.tabs, "rounds": round_no, **results,
        "server_log_error_lines": bad_lines[:20], "server_log_error_count": len(bad_lines),
        "rss_mib": {"first_sixth_median": round(statistics.median(rss[:k]) / 2**20, 1) if rss else None,
                    "last_sixth_median": round(statistics.median(rss[-k:]) / 2**20, 1) if rss else None,
                    "max": round(max(rss) / 2**20, 1) if rss else None},
        "rss_samples": samples,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
