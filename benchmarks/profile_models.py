"""Where each model's time and MLX memory go on the active device and form, part by part.

    python benchmarks/profile_models.py [--seconds 30] [--repeats 3] > profile.json

Full-size untrained models (v2 48 kHz synthesizer, HuBERT-base, RMVPE); every part is timed as
the best of ``--repeats`` runs after a warm-up, each ended by ``mx.eval``, with MLX's peak
memory of the first timed run. Also compares the two forms' dilated convolution on the decoder's
largest shapes. Prints one JSON object; ``mlx-rvc bench`` measures the whole conversion.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import mlx_rvc  # noqa: F401  (installs the fast BLAS before MLX loads)
import mlx.core as mx
from mlx_rvc import forms
from mlx_rvc.backend import describe
from mlx_rvc.bench import speech_like
from mlx_rvc.dsp.mel import log_mel
from mlx_rvc.models import hubert, rmvpe, synthesizer
from mlx_rvc.models.layers import sequence_mask
from mlx_rvc.models.nsf import sine_excitation


def timed(report: dict, name: str, fn, repeats: int) -> None:
    fn()
    times, peak = [], None
    for i in range(repeats):
        mx.reset_peak_memory()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if i == 0:
            peak = mx.get_peak_memory()
    report[name] = {"seconds": round(min(times), 4), "peak_mlx_gib": round(peak / 2**30, 3)}
    print(name, report[name], flush=True, file=__import__("sys").stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    r = args.repeats
    report: dict = {"system": describe(), "seconds": args.seconds}
    frames = int(args.seconds * 100)
    rng = np.random.default_rng(0)

    cfg = synthesizer.standard_config("v2", 48000, True)
    synth = synthesizer.build(cfg, synthesizer.random_weights(cfg, seed=0))
    phone = mx.array(rng.standard_normal((1, frames, cfg.phone_channels)).astype(np.float32))
    pitchf = (180 + 40 * np.sin(np.arange(frames) / 50)).astype(np.float32)[None]
    pitch = mx.array(np.full((1, frames), 100, np.int32))
    x_mask = sequence_mask(mx.array([frames]), frames)
    g = synth.emb_g(mx.array([0]))[:, None, :]
    z = mx.array(rng.standard_normal((1, frames, cfg.inter_channels)).astype(np.float32))
    noise = rng.standard_normal((1, frames * cfg.upp, 1))
    sine = mx.array(sine_excitation(pitchf, upp=cfg.upp, sample_rate=cfg.sample_rate, noise=noise))
    mx.eval(phone, pitch, x_mask, g, z, sine)
    timed(report, "synth.text_encoder", lambda: mx.eval(synth.enc_p(phone, pitch, x_mask)), r)
    timed(report, "synth.flow", lambda: mx.eval(synth.flow.reverse(z, x_mask, g)), r)
    timed(report, "synth.sine_excitation_host", lambda: sine_excitation(pitchf, upp=cfg.upp, sample_rate=cfg.sample_rate,
                                                                        noise=noise), r)
    timed(report, "synth.decoder_one_pass", lambda: mx.eval(synth.dec(z, g, sine, chunk_frames=None)), r)
    timed(report, "synth.decoder_pieces_1000", lambda: mx.eval(synth.dec(z, g, sine, chunk_frames=1000)), r)
    timed(report, "synth.infer", lambda: mx.eval(synth.infer(phone, mx.array([frames]), mx.array([0]), pitch=pitch,
                                                             pitchf=pitchf)), r)
    del synth

    audio = speech_like(args.seconds)
    model = rmvpe.build(rmvpe.RELEASED, rmvpe.random_weights(rmvpe.RELEASED))
    mel = log_mel(audio)
    padded = -(-mel.shape[1] // 32) * 32
    x = mx.array(np.pad(mel.T, ((0, padded - mel.shape[1]), (0, 0))).astype(np.float32)[None])
    feats = model.image_features(x)
    mx.eval(feats)
    timed(report, "rmvpe.log_mel_host", lambda: log_mel(audio), r)
    timed(report, "rmvpe.unet_and_cnn", lambda: mx.eval(model.image_features(x)), r)
    timed(report, "rmvpe.gru", lambda: mx.eval(model.fc[0](feats)), r)
    timed(report, "rmvpe.f0", lambda: model.f0(audio), r)
    del model

    enc = hubert.build(hubert.BASE, hubert.random_weights(hubert.BASE))
    timed(report, "hubert.features_v2", lambda: enc.features(audio, version="v2"), r)
    del enc

    ops = {"cpu_form_matmuls": forms.cpu.conv1d, "gpu_form_native": forms.gpu.conv1d}
    for channels, samples in ((32, frames * 480), (128, frames * 120)):
        xs = mx.array(rng.standard_normal((1, samples, channels)).astype(np.float32))
        w = mx.array(rng.standard_normal((channels, 11, channels)).astype(np.float32) * 0.05)
        mx.eval(xs, w)
        for name, op in ops.items():
            timed(report, f"conv1d k11 d5 {channels}ch x {samples}: {name}",
                  lambda op=op: mx.eval(op(xs, w, None, dilation=5, padding=25)), r)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
