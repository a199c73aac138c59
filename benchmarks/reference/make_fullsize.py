"""Full-size golden fixtures from the PyTorch reference (RVC WebUI), in the tiny fixtures' format.

Builds randomly initialised, full-size models in the on-disk formats users have, runs the
reference's own code on them with every random draw recorded, and writes ``.npz`` fixtures and a
``fixtures.json`` that ``mlx-rvc parity`` reads exactly like ``tests/fixtures``. It also times
the reference (2 torch threads) for the benchmarks.

Needs a separate environment with torch (never a dependency of mlx-rvc):

    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 \\
        transformers==4.49.0 faiss-cpu praat-parselmouth librosa soundfile scipy
    /tmp/torchenv/bin/python benchmarks/reference/make_fullsize.py --rvc PATH/TO/RVC-WebUI --out OUT \\
        [--only synth,hubert,rmvpe,e2e] [--seconds 30]

(e2e needs the voices, encoder and RMVPE model that the other parts write.)

``--rvc`` is a checkout of RVC-Project/Retrieval-based-Voice-Conversion-WebUI; its modules are
imported from there. Speech comes from espeak-ng (Debian package) when available.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEED = 20260101
TORCH_THREADS = 2
SR16 = 16000
SENTENCES = [
    "The quick brown fox jumps over the lazy dog while the band keeps playing.",
    "Voice conversion changes the timbre of a recording but keeps its words and melody.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
    "A singer may record a line many times before the producer is finally happy with it.",
    "Numbers like three hundred and forty two are spoken slowly and clearly here.",
]


def speech(seconds: float, *, seed: int = 0) -> np.ndarray:
    """``seconds`` of espeak-ng speech at 16 kHz, peak 0.8, with a −60 dBFS noise floor."""
    rng = np.random.default_rng(seed)
    import soundfile as sf
    from scipy.signal import resample_poly

    pieces, total = [], 0
    espeak = shutil.which("espeak-ng")
    i = 0
    while total < seconds * SR16:
        if espeak:
            with tempfile.TemporaryDirectory() as tmp:
                wav = Path(tmp) / "s.wav"
                voice = ["en-us", "en-gb", "en-us+f3", "en-us+m3"][i % 4]
                subprocess.run([espeak, "-v", voice, "-s", "150", "-w", str(wav), SENTENCES[i % len(SENTENCES)]],
                               check=True, capture_output=True)
                x, sr = sf.read(wav, dtype="float64")
            x = resample_poly(x, SR16, sr)
        else:  # a vowel-like harmonic sweep when espeak-ng is missing
            t = np.arange(int(2.5 * SR16)) / SR16
            f = 140 + 60 * np.sin(2 * np.pi * 0.7 * t + i)
            ph = 2 * np.pi * np.cumsum(f) / SR16
            x = sum(np.sin(k * ph) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        pieces += [x, np.zeros(int(0.25 * SR16))]
        total += len(x) + int(0.25 * SR16)
        i += 1
    x = np.concatenate(pieces)[: int(seconds * SR16)]
    x = 0.8 * x / np.abs(x).max()
    return (x + rng.standard_normal(len(x)) * 1e-3).astype(np.float32)


class DrawRecorder:
    """Patches torch's random functions; every call's result is kept in order (role named by the caller)."""

    FUNCS = ("rand", "randn", "rand_like", "randn_like", "randint", "normal")

    def __init__(self, torch):
        self.torch = torch
        self.draws: list[tuple[str, object]] = []

    @contextlib.contextmanager
    def record(self):
        originals = {name: getattr(self.torch, name) for name in self.FUNCS}

        def wrap(name, fn):
            def inner(*args, **kwargs):
                out = fn(*args, **kwargs)
                self.draws.append((name, out.detach().clone()))
                return out
            return inner

        for name, fn in originals.items():
            setattr(self.torch, name, wrap(name, fn))
        try:
            yield self
        finally:
            for name, fn in originals.items():
                setattr(self.torch, name, fn)


def randomise(module, torch, *, rng_seed: int) -> None:
    """Make default-initialised weights non-trivial: norms and stats random, weight_g ≠ ‖v‖."""
    g = torch.Generator().manual_seed(rng_seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("weight_g", "original0")):
                p.mul_(0.5 + torch.rand(p.shape, generator=g))
            elif ("norm" in name or name.endswith(("gamma", "beta"))) and p.dim() == 1:
                if name.endswith(("weight", "gamma")):
                    p.copy_(0.8 + 0.4 * torch.rand(p.shape, generator=g))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


def fp16_round(module, torch) -> None:
    with torch.no_grad():
        for p in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            p.copy_(p.half().float())


# ----------------------------------------------------------------------------- synthesizers

VARIANTS = [(v, sr, f0) for v in ("v1", "v2") for sr in ("32k", "40k", "48k") for f0 in (1, 0)]


def make_voice(torch, models, rvc: Path, version: str, sr: str, f0: int, path: Path):
    cfg_file = rvc / "configs" / ("v1" if version == "v1" or sr == "40k" else "v2") / f"{sr}.json"
    hp = json.loads(cfg_file.read_text())
    m, d, tr = hp["model"], hp["data"], hp["train"]
    config = [d["filter_length"] // 2 + 1, tr["segment_size"] // d["hop_length"], m["inter_channels"],
              m["hidden_channels"], m["filter_channels"], m["n_heads"], m["n_layers"], m["kernel_size"],
              m["p_dropout"], m["resblock"], m["resblock_kernel_sizes"], m["resblock_dilation_sizes"],
              m["upsample_rates"], m["upsample_initial_channel"], m["upsample_kernel_sizes"], m["spk_embed_dim"],
              m["gin_channels"], d["sampling_rate"]]
    cls = {("v1", 1): models.SynthesizerTrnMs256NSFsid, ("v1", 0): models.SynthesizerTrnMs256NSFsid_nono,
           ("v2", 1): models.SynthesizerTrnMs768NSFsid, ("v2", 0): models.SynthesizerTrnMs768NSFsid_nono}[(version, f0)]
    torch.manual_seed(SEED + VARIANTS.index((version, sr, f0)))
    net = cls(*config, is_half=False)
    randomise(net, torch, rng_seed=SEED + 1)
    with torch.no_grad():
        for flow in net.flow.flows[::2]:
            flow.post.weight.normal_(0, 0.02)
            flow.post.bias.normal_(0, 0.02)
        if f0:
            net.dec.m_source.l_linear.weight.fill_(4.0)
    fp16_round(net, torch)
    # scale conv_post so a forward pass gives RMS ≈ 0.25
    phone, lengths, pitch, pitchf, sid = synth_inputs(torch, config, version, f0, 100, seed=1)
    with torch.no_grad():
        args = (phone, lengths, pitch, pitchf, sid) if f0 else (phone, lengths, sid)
        for _ in range(3):
            audio = net.infer(*args)[0]
            rms = float(audio.pow(2).mean().sqrt())
            net.dec.conv_post.weight.mul_(min(max(0.25 / max(rms, 1e-4), 0.2), 5.0))
    fp16_round(net, torch)
    state = collections.OrderedDict(
        (k, v.half()) for k, v in net.state_dict().items() if not k.startswith("enc_q."))
    ckpt = collections.OrderedDict(weight=state, config=config, info="200epoch", sr=sr, f0=f0, version=version)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return config, cls.__name__


def synth_inputs(torch, config, version, f0, frames, *, seed):
    rng = np.random.default_rng(seed)
    dim = 256 if version == "v1" else 768
    base = rng.standard_normal((frames // 2 + 8, dim))
    kernel = np.hanning(7)
    base = np.stack([np.convolve(base[:, i], kernel / kernel.sum() * 2.5, "same") for i in range(dim)], 1)
    phone = np.repeat(base, 2, axis=0)[:frames][None].astype(np.float32)
    hz = (180 + 60 * np.sin(np.arange(frames) / 17.0)).astype(np.float32)
    hz[frames // 3: frames // 3 + 10] = 0  # an unvoiced stretch: SineGen's noise-only branch
    mel = 1127 * np.log(1 + hz / 700)
    lo, hi = 1127 * np.log(1 + 50 / 700), 1127 * np.log(1 + 1100 / 700)
    coarse = np.where(mel > 0, (mel - lo) * 254 / (hi - lo) + 1, mel)
    coarse = np.rint(np.clip(coarse, 1, 255)).astype(np.int64)
    return (torch.from_numpy(phone), torch.tensor([frames]), torch.from_numpy(coarse[None]),
            torch.from_numpy(hz[None]), torch.tensor([3]))


def run_synth(torch, rvc: Path, out: Path, frames: int, entries: dict, timings: dict, variants):
    from infer.module import models

    for version, sr, f0 in variants:
        name = f"{version}_{sr}_{'f0' if f0 else 'nof0'}"
        path = out / "models" / "weights" / f"{name}.pth"
        config, cls_name = make_voice(torch, models, rvc, version, sr, f0, path)
        cpt = torch.load(path, map_location="cpu", weights_only=True)
        config = list(cpt["config"])
        config[-3] = cpt["weight"]["emb_g.weight"].shape[0]
        cls = getattr(models, cls_name)
        net = cls(*config, is_half=False)
        del net.enc_q
        net.load_state_dict(cpt["weight"], strict=False)
        net.eval().float()
        phone, lengths, pitch, pitchf, sid = synth_inputs(torch, config, version, f0, frames, seed=2)
        caught = {}
        hooks = [
            net.enc_p.encoder.register_forward_hook(lambda m, i, o: caught.__setitem__("enc_p_encoder_out", o)),
            net.dec.conv_pre.register_forward_hook(lambda m, i, o: caught.__setitem__("dec_conv_pre_out", o)),
            net.dec.conv_post.register_forward_hook(lambda m, i, o: caught.__setitem__("dec_conv_post_out", o)),
        ]
        for i, up in enumerate(net.dec.ups):
            hooks.append(up.register_forward_hook(lambda m, inp, o, i=i: caught.__setitem__(f"dec_ups{i}_out", o)))
        if f0:
            for i, nc in enumerate(net.dec.noise_convs):
                hooks.append(nc.register_forward_hook(
                    lambda m, inp, o, i=i: caught.__setitem__(f"dec_noise_convs{i}_out", o)))
            hooks.append(net.dec.m_source.l_sin_gen.register_forward_hook(
                lambda m, inp, o: caught.__setitem__("sine_waves", o[0])))
            hooks.append(net.dec.m_source.register_forward_hook(
                lambda m, inp, o: caught.__setitem__("har_source", o[0])))
        rec = DrawRecorder(torch)
        torch.manual_seed(1234)
        with torch.no_grad(), rec.record():
            args = (phone, lengths, pitch, pitchf, sid) if f0 else (phone, lengths, sid)
            audio, x_mask, (z, z_p, m_p, logs_p) = net.infer(*args)
        for h in hooks:
            h.remove()
        roles = ["z_p_noise"] + (["sine_rand_ini", "sine_noise"] if f0 else [])
        assert len(rec.draws) == len(roles), [d[0] for d in rec.draws]
        arrays = {"phone": phone, "phone_lengths": lengths, "sid": sid, "g": net.emb_g(sid),
                  "m_p": m_p, "logs_p": logs_p, "x_mask": x_mask, "z_p": z_p, "z": z, "dec_input": z * x_mask,
                  "audio": audio, **caught}
        if f0:
            arrays.update(pitch=pitch, pitchf=pitchf)
        draws = []
        for idx, (role, (fn, value)) in enumerate(zip(roles, rec.draws)):
            key = f"rand{idx:03d}_{role}"
            arrays[key] = value
            draws.append({"index": idx, "role": role, "torch_fn": fn, "shape": list(value.shape), "key": key})
        # replay under another seed: the recorded draws must reproduce the audio bit for bit
        replay = iter([v for _, v in rec.draws])
        with torch.no_grad(), patched_draws(torch, replay):
            torch.manual_seed(99)
            again = net.infer(*args)[0]
        assert torch.equal(again, audio), f"{name}: replay differs"
        np_arrays = {k: v.detach().numpy() if hasattr(v, "detach") else np.asarray(v) for k, v in arrays.items()}
        fname = f"synth_{name}.npz"
        np.savez_compressed(out / fname, **np_arrays)
        entries[fname] = {
            "producer": "net_g.infer(...) of the reference model class, torch.manual_seed(1234), draws recorded",
            "model": f"models/weights/{name}.pth", "class": cls_name, "config": config,
            "upp": int(np.prod(config[12])), "random_draws": draws,
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in np_arrays.items()},
        }
        print(f"synth {name}: audio rms {float(audio.pow(2).mean().sqrt()):.3f}", flush=True)
        if (version, sr, f0) == ("v2", "48k", 1):
            long_args = synth_inputs(torch, config, version, f0, 3000, seed=3)
            with torch.no_grad():
                net.infer(*long_args)  # warm-up
                t0 = time.perf_counter()
                net.infer(*long_args)
                timings["synth_v2_48k_f0 30s"] = round(time.perf_counter() - t0, 3)


@contextlib.contextmanager
def patched_draws(torch, values):
    originals = {name: getattr(torch, name) for name in DrawRecorder.FUNCS}

    def give(*args, **kwargs):
        return next(values).clone()

    for name in DrawRecorder.FUNCS:
        setattr(torch, name, give)
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(torch, name, fn)


# ----------------------------------------------------------------------------- hubert / rmvpe


def make_hubert(torch, out: Path) -> Path:
    from infer.hubert import HubertModelWithFinalProj
    from transformers import HubertConfig

    cfg = HubertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                       classifier_proj_size=256, feat_extract_norm="group", do_stable_layer_norm=False,
                       conv_bias=False, layer_norm_eps=1e-5)
    cfg.architectures = ["HubertModelWithFinalProj"]
    torch.manual_seed(SEED)
    model = HubertModelWithFinalProj(cfg).eval()
    randomise(model, torch, rng_seed=SEED + 2)
    fp16_round(model, torch)
    hf = out / "models" / "hubert_base"
    model.save_pretrained(hf, safe_serialization=True)  # parametrizations.weight.original0/1
    (hf / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": False, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
        "padding_side": "right", "padding_value": 0, "return_attention_mask": False, "sampling_rate": 16000}))
    # the legacy names (weight_g / weight_v) in pytorch_model.bin, as older exports have
    legacy = out / "models" / "hubert_base_bin"
    legacy.mkdir(parents=True, exist_ok=True)
    shutil.copy(hf / "config.json", legacy / "config.json")
    shutil.copy(hf / "preprocessor_config.json", legacy / "preprocessor_config.json")
    state = {k.replace("parametrizations.weight.original0", "weight_g").replace(
        "parametrizations.weight.original1", "weight_v"): v for k, v in model.state_dict().items()}
    torch.save(collections.OrderedDict(state), legacy / "pytorch_model.bin")
    # the fairseq form: fp16, fairseq names, cfg as plain dicts
    rename = [("feature_extractor.conv_layers.0.layer_norm.", "feature_extractor.conv_layers.0.2."),
              ("feature_projection.projection.", "post_extract_proj."), ("feature_projection.layer_norm.", "layer_norm."),
              ("encoder.pos_conv_embed.conv.", "encoder.pos_conv.0."), (".attention.", ".self_attn."),
              (".feed_forward.intermediate_dense.", ".fc1."), (".feed_forward.output_dense.", ".fc2.")]
    fairseq = collections.OrderedDict()
    for k, v in state.items():
        if k == "masked_spec_embed":
            k = "mask_emb"
        k = k.replace(".conv.weight", ".0.weight") if k.startswith("feature_extractor.conv_layers") and ".conv." in k else k
        for a, b in rename:
            k = k.replace(a, b)
        if ".layers." in k and ".layer_norm." in k and "final_layer_norm" not in k:
            k = k.replace(".layer_norm.", ".self_attn_layer_norm.")
        fairseq[k] = v.half()
    conv = "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
    ckpt = {"args": None, "cfg": {"model": {"_name": "hubert", "encoder_layers": 12, "encoder_embed_dim": 768,
                                            "encoder_ffn_embed_dim": 3072, "encoder_attention_heads": 12,
                                            "conv_feature_layers": conv, "conv_pos": 128, "conv_pos_groups": 16,
                                            "final_dim": 256, "extractor_mode": "default", "layer_norm_first": False,
                                            "conv_bias": False},
                                  "task": {"normalize": False}},
            "model": fairseq, "criterion": None, "optimizer_history": [], "task_state": {}, "extra_state": {}}
    torch.save(ckpt, out / "models" / "hubert_base.pt")
    return hf


def run_hubert(torch, rvc: Path, out: Path, seconds: float, entries: dict, timings: dict):
    import infer.hubert as H

    hf = make_hubert(torch, out)
    H.HUBERT_MODEL_PATH = hf
    model = H.load_hubert_model("cpu", is_half=False)
    x = speech(seconds, seed=5)
    src = torch.from_numpy(x)[None]
    with torch.no_grad():
        conv = model.feature_extractor(src)
        v1 = H.extract_hubert_features(model, src, "v1")
        H.extract_hubert_features(model, src, "v2")  # warm-up
        t0 = time.perf_counter()
        v2 = H.extract_hubert_features(model, src, "v2")
        timings[f"hubert_v2 {seconds:g}s"] = round(time.perf_counter() - t0, 3)
    arrays = {"input_16k": x, "conv_features": conv.numpy(), "feats_v1_layer9_final_proj": v1[0].numpy(),
              "feats_v2_layer12": v2[0].numpy()}
    np.savez_compressed(out / "hubert_full.npz", **arrays)
    entries["hubert_full.npz"] = {"producer": "infer.hubert.extract_hubert_features", "model": "models/hubert_base",
                                  "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}


def run_rmvpe(torch, rvc: Path, out: Path, seconds: float, entries: dict, timings: dict):
    import infer.rmvpe as R

    torch.manual_seed(SEED + 3)
    net = R.E2E(4, 1, (2, 2)).eval()
    randomise(net, torch, rng_seed=SEED + 4)
    with torch.no_grad():  # an output bias that makes ~70 % of frames voiced at plausible pitches
        bias = net.fc[1].bias
        bias.copy_(-4 + 5 * torch.exp(-0.5 * ((torch.arange(360) - 140) / 25.0) ** 2))
    fp16_round(net, torch)
    path = out / "models" / "rmvpe.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(collections.OrderedDict((k, v.half() if v.is_floating_point() else v)
                                       for k, v in net.state_dict().items()), path)
    rm = R.RMVPE(str(path), is_half=False, device="cpu")
    x = speech(seconds, seed=6)
    mel = rm.extract_mel(x, center=True)
    hidden = rm.mel2hidden(mel)[0].numpy()
    f0 = rm.decode(hidden, thred=0.03)
    rm.infer_from_audio(x, thred=0.03)  # warm-up
    t0 = time.perf_counter()
    rm.infer_from_audio(x, thred=0.03)
    timings[f"rmvpe {seconds:g}s"] = round(time.perf_counter() - t0, 3)
    arrays = {"input_16k": x, "mel": mel[0].numpy(), "hidden": hidden, "f0": f0, "thred": np.array(0.03)}
    np.savez_compressed(out / "rmvpe_full.npz", **arrays)
    entries["rmvpe_full.npz"] = {"producer": "infer.rmvpe.RMVPE: extract_mel -> mel2hidden -> decode", "model": "models/rmvpe.pt",
                                 "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}


E2E_CASES = {  # name -> (voice variant, f0 method, index dimension or None, seconds)
    "e2e_full_v2_48k_f0_rmvpe": ("v2_48k_f0", "rmvpe", 768, 30.0),
    "e2e_full_v1_40k_nof0": ("v1_40k_nof0", None, 256, 30.0),
    "e2e_full_v2_48k_f0_rmvpe_chunked": ("v2_48k_f0", "rmvpe", 768, 50.0),
}


def _index(torch_free_path: Path, dim: int, seed: int) -> None:
    import faiss

    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((4000, dim)).astype(np.float32)
    index = faiss.index_factory(dim, "IVF252,Flat")  # nlist = min(16·√N, N // 39), as train_index.py
    index.train(vectors)
    index.add(vectors)
    faiss.write_index(index, str(torch_free_path))


def run_e2e(torch, rvc: Path, out: Path, entries: dict, timings: dict):
    """The reference pipeline (``Pipeline.pipeline``, CPU Config) with every draw recorded."""
    import infer.hubert as H
    from infer.module import models
    from infer.vc.pipeline import Pipeline

    H.HUBERT_MODEL_PATH = (out / "models" / "hubert_base").resolve()
    os.environ["rmvpe_root"] = str((out / "models").resolve())
    hubert = H.load_hubert_model("cpu", is_half=False)

    class Cfg:
        x_pad, x_query, x_center, x_max, is_half, device = 1, 6, 38, 41, False, "cpu"

    for case, (variant, method, dim, seconds) in E2E_CASES.items():
        cpt = torch.load(out / "models" / "weights" / f"{variant}.pth", map_location="cpu", weights_only=True)
        config = list(cpt["config"])
        config[-3] = cpt["weight"]["emb_g.weight"].shape[0]
        version, if_f0 = cpt["version"], cpt["f0"]
        cls = {("v1", 1): models.SynthesizerTrnMs256NSFsid, ("v1", 0): models.SynthesizerTrnMs256NSFsid_nono,
               ("v2", 1): models.SynthesizerTrnMs768NSFsid, ("v2", 0): models.SynthesizerTrnMs768NSFsid_nono}[(version, if_f0)]
        net = cls(*config, is_half=False)
        del net.enc_q
        net.load_state_dict(cpt["weight"], strict=False)
        net.eval().float()
        index_name = f"voice{dim}.index"
        if not (out / index_name).exists():
            _index(out / index_name, dim, seed=dim)
        audio = speech(seconds, seed=11)
        pipe = Pipeline(config[-1], Cfg())
        rec = DrawRecorder(torch)
        times = [0.0, 0.0, 0.0]
        t0 = time.perf_counter()
        with torch.no_grad(), rec.record():
            opt = pipe.pipeline(hubert, net, 0, audio.copy(), times, 0, method or "pm", str(out / index_name),
                                0.75, if_f0, config[-1], 0, 0.25, version, 0.33)
        timings[case] = round(time.perf_counter() - t0, 3)
        arrays = {"input_audio_16k": audio, "output_int16": opt}
        draws = []
        for idx, (fn, value) in enumerate(rec.draws):
            shape = list(value.shape)
            if fn == "rand" and shape == []:
                role, key = "hubert_layerdrop_unused", None
            elif fn == "randn_like" and len(shape) == 3 and shape[-1] != 1:
                role = "z_p_noise"
            elif fn == "rand":
                role = "sine_rand_ini"
            else:
                role = "sine_noise"
            if role != "hubert_layerdrop_unused":
                key = f"rand{idx:03d}_{role}"
                arrays[key] = value.numpy()
            draws.append({"index": idx, "role": role, "torch_fn": fn, "shape": shape, "key": key})
        np.savez_compressed(out / f"{case}.npz", **arrays)
        entries[f"{case}.npz"] = {
            "producer": "infer.vc.pipeline.Pipeline.pipeline with the CPU Config, draws recorded",
            "model": f"models/weights/{variant}.pth", "hubert": "hubert_base", "rmvpe": "models/rmvpe.pt",
            "params": {"sid": 0, "f0_up_key": 0, "f0_method": method, "index_rate": 0.75, "resample_sr": 0,
                       "rms_mix_rate": 0.25, "protect": 0.33, "file_index": index_name},
            "config": {"x_pad": 1, "x_query": 6, "x_center": 38, "x_max": 41, "is_half": False},
            "tgt_sr": config[-1], "version": version, "if_f0": if_f0, "random_draws": draws,
            "arrays": {k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)} for k, v in arrays.items()},
        }
        print(f"{case}: {timings[case]} s, {sum(d['role'] == 'z_p_noise' for d in draws)} chunk(s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rvc", type=Path, required=True, help="RVC WebUI checkout")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", default="synth,hubert,rmvpe")
    ap.add_argument("--frames", type=int, default=200, help="synthesizer input frames")
    ap.add_argument("--seconds", type=float, default=30.0, help="HuBERT/RMVPE input length")
    ap.add_argument("--variants", default="", help="e.g. v2_48k_f0,v1_40k_nof0 (default: all 12)")
    args = ap.parse_args()
    sys.path.insert(0, str(args.rvc.resolve()))
    os.chdir(args.rvc)  # the reference resolves some paths relative to its root
    import torch

    torch.set_num_threads(TORCH_THREADS)
    args.out.mkdir(parents=True, exist_ok=True)
    index_path = args.out / "fixtures.json"
    meta = json.loads(index_path.read_text()) if index_path.exists() else {"fixtures": {}, "timings_seconds": {}}
    meta.update(reference="RVC WebUI (RVC-Project)", size="full", torch=torch.__version__, torch_threads=TORCH_THREADS)
    only = set(args.only.split(","))
    variants = VARIANTS
    if args.variants:
        wanted = set(args.variants.split(","))
        variants = [v for v in VARIANTS if f"{v[0]}_{v[1]}_{'f0' if v[2] else 'nof0'}" in wanted]
    if "synth" in only:
        run_synth(torch, args.rvc, args.out, args.frames, meta["fixtures"], meta["timings_seconds"], variants)
    if "hubert" in only:
        run_hubert(torch, args.rvc, args.out, args.seconds, meta["fixtures"], meta["timings_seconds"])
    if "rmvpe" in only:
        run_rmvpe(torch, args.rvc, args.out, args.seconds, meta["fixtures"], meta["timings_seconds"])
    if "e2e" in only:
        run_e2e(torch, args.rvc, args.out, meta["fixtures"], meta["timings_seconds"])
    index_path.write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta["timings_seconds"], indent=1))


if __name__ == "__main__":
    main()
