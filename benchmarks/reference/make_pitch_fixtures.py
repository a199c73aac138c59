"""FCPE and CREPE goldens from their PyTorch packages (torchfcpe 0.0.4, torchcrepe 0.0.24).

Reads clips written by ``mlx-rvc bench pitch --save-clips CLIPS.npz`` (speech and singing
re-synthesised with WORLD, noisy and breathy versions, ~100 s) and runs on each, as the
references call them:

* FCPE: ``spawn_bundled_infer_model('cpu').infer(x, sr=16000, decoder_mode="local_argmax",
  threshold=0.006)`` (RVC WebUI 2026 and Applio), f0 of ``len // 160 + 1`` frames;
* CREPE (full and tiny): ``torchcrepe.predict(x, 16000, 160, 50, 1100, model, batch_size=512,
  return_periodicity=True)`` then ``median(pd, 3)``, ``mean(f0, 3)``, ``f0[pd < 0.1] = 0`` (RVC
  WebUI and Applio). torchcrepe dithers its decoded cents with numpy's global random state: it is
  seeded with ``SEED`` before each clip and numpy's ``RandomState(SEED)`` reproduces the draws.

Writes ``OUT`` (npz: ``<method>/<clip>`` f0 arrays, plus FCPE's mel and salience of 2 s of the first
clip) and prints timings (torch on 2 threads, the best of ``--repeats`` after a warm-up).

With ``--excerpts`` it writes the tests' small golden file instead (``tests/fixtures/pitch.npz``):
``EXCERPT_SECONDS`` from the start of a few clips, quantised to 16-bit (``audio/<clip>`` int16;
the references run on exactly ``int16 / 32768``), each with torchfcpe's and torchcrepe tiny's f0,
torchcrepe full's f0 of the first ``FULL_SECONDS``, and FCPE's log-mel and salience of the first.

Needs the torch environment (never the product's) with the two wheels installed ``--no-deps``
plus einops, local-attention, librosa, resampy, scipy; torchaudio is only imported by the
packages for resampling, which 16 kHz input never reaches, so a stub stands in when the installed
torchaudio does not match torch:

    TORCH_VENV/bin/python benchmarks/reference/make_pitch_fixtures.py CLIPS.npz OUT.npz [--methods fcpe,crepe,crepe-tiny]
"""

from __future__ import annotations

import argparse
import sys
import time
import types

import numpy as np

SEED = 0
THREADS = 2
EXCERPTS = ("speech_x1.8", "singing_high", "speech_x1_snr0")  # clips the tests' goldens are cut from
EXCERPT_SECONDS = 1.5
FULL_SECONDS = 0.3  # CREPE full is heavy: the tests run it on this much


def _import_packages():
    try:
        import torchaudio  # noqa: F401
        import torchaudio.transforms  # noqa: F401
    except (ImportError, OSError):
        stub = types.ModuleType("torchaudio")
        stub.transforms = types.ModuleType("torchaudio.transforms")
        stub.transforms.Resample = None
        stub.load = None
        sys.modules["torchaudio"] = stub
        sys.modules["torchaudio.transforms"] = stub.transforms
    import torchcrepe
    import torchfcpe

    return torchfcpe, torchcrepe


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clips")
    ap.add_argument("out")
    ap.add_argument("--methods", default="fcpe,crepe,crepe-tiny")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--excerpts", action="store_true", help="write the tests' small golden file")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(THREADS)
    torchfcpe, torchcrepe = _import_packages()
    data = np.load(args.clips)
    names = [k[len("audio/"):] for k in data.files if k.startswith("audio/")]
    out: dict[str, np.ndarray] = {}
    fcpe = torchfcpe.spawn_bundled_infer_model(device="cpu")

    def run_fcpe(x):
        with torch.no_grad():
            f0 = fcpe.infer(torch.from_numpy(x).float().unsqueeze(0), sr=16000, decoder_mode="local_argmax",
                            threshold=0.006)
        return f0.squeeze().cpu().numpy()

    def run_crepe(x, capacity):
        np.random.seed(SEED)
        with torch.no_grad():
            f0, pd = torchcrepe.predict(torch.from_numpy(x).float()[None], 16000, 160, 50, 1100, capacity,
                                        batch_size=512, device="cpu", return_periodicity=True)
        pd = torchcrepe.filter.median(pd, 3)
        f0 = torchcrepe.filter.mean(f0, 3)
        f0[pd < 0.1] = 0
        return f0[0].cpu().numpy()

    if args.excerpts:
        for name in EXCERPTS:
            q = np.clip(np.round(data["audio/" + name][:int(EXCERPT_SECONDS * 16000)] * 32768), -32768, 32767)
            q = q.astype(np.int16)
            x = q.astype(np.float32) / 32768
            out["audio/" + name] = q
            out["fcpe/" + name] = run_fcpe(x).astype(np.float32)
            out["crepe-tiny/" + name] = run_crepe(x, "tiny").astype(np.float32)
            out["crepe/" + name] = run_crepe(x[:int(FULL_SECONDS * 16000)], "full").astype(np.float32)
        x0 = torch.from_numpy(out["audio/" + EXCERPTS[0]].astype(np.float32) / 32768)
        with torch.no_grad():
            mel = fcpe.wav2mel(x0[None, :, None], 16000)
            out["fcpe_mel"] = mel[0].numpy()
            out["fcpe_salience"] = fcpe.model(mel)[0].numpy()
        np.savez_compressed(args.out, **out)
        return
    runners = {"fcpe": run_fcpe, "crepe": lambda x: run_crepe(x, "full"), "crepe-tiny": lambda x: run_crepe(x, "tiny")}
    total = sum(data["audio/" + n].size for n in names) / 16000
    for method in args.methods.split(","):
        fn = runners[method]
        fn(data["audio/" + names[0]][:16000])  # warm-up (loads the model)
        best = None
        for _ in range(max(1, args.repeats)):
            t0 = time.perf_counter()
            for n in names:
                out[f"{method}/{n}"] = np.asarray(fn(data["audio/" + n]), np.float32)
            elapsed = time.perf_counter() - t0
            best = elapsed if best is None else min(best, elapsed)
        out[f"time/{method}"] = np.float64(best)
        print(f"{method}: {total:.1f} s of audio in {best:.2f} s ({best / total:.4f} s per s, torch {torch.__version__},"
              f" {THREADS} threads)", flush=True)
    x0 = torch.from_numpy(data["audio/" + names[0]][:16000 * 2]).float()
    with torch.no_grad():  # raw network outputs of 2 s, for layer-level tests
        out["fcpe_salience"] = fcpe.model(fcpe.wav2mel(x0[None, :, None], 16000))[0].numpy()
        out["fcpe_mel"] = fcpe.wav2mel(x0[None, :, None], 16000)[0].numpy()
    np.savez_compressed(args.out, **out)


if __name__ == "__main__":
    main()
