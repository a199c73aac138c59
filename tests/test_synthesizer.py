"""The MLX synthesizer against the reference's golden fixtures, every variant, every stage."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_rvc import forms
from mlx_rvc.forms import cpu_attention

from mlx_rvc.importer import convert, read_source
from mlx_rvc.models import synthesizer as synth
from mlx_rvc.parity import run_parity

from .conftest import FIXTURES, MODELS

VARIANTS = [f"{v}_{sr}_{f}" for v in ("v1", "v2") for sr in ("32k", "40k", "48k") for f in ("f0", "nof0")]

# Tiny models: every stage is a few float32 operations deep, so outputs agree with the
# reference to a few 1e-7 relative (measured ≤ 2.5e-6); 2e-5 is ~10x that, far below the
# O(1) error of any wrong tap, scale or layout.
STAGE_REL_RMS = 2e-5


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_stage_matches_reference(variant, form):
    report = run_parity(FIXTURES / f"synth_{variant}.npz")
    failures = [c.as_dict() for c in report.checks if not c.passed]
    assert not failures, failures
    checked = {c.key for c in report.checks}
    expected = {"audio", "m_p", "logs_p", "z_p", "z", "enc_p_encoder_out", "dec_conv_pre_out", "dec_ups0_out"}
    expected |= {f"flow_rev{j}_{'flip' if j % 2 == 0 else 'coupling'}{3 - j // 2}" for j in range(8)}
    if variant.endswith("_f0"):
        expected |= {"sine_waves", "har_source", "dec_noise_convs0_out"}
    assert expected <= checked, expected - checked
    for c in report.checks:
        assert c.diff.rel_rms <= STAGE_REL_RMS, (c.key, c.diff.rel_rms)
    audio = next(c for c in report.checks if c.key == "audio")
    assert audio.diff.corr >= 0.99999
    assert audio.audio.spec_corr >= 0.99999
    assert abs(audio.audio.rms_ratio - 1) <= 1e-4


def _model(variant: str) -> synth.Synthesizer:
    config, weights = convert(read_source(MODELS / "weights" / f"{variant}.pth"))
    return synth.build(synth.SynthesizerConfig.from_dict(config), weights)


def _inputs(cfg: synth.SynthesizerConfig, t: int, b: int = 1):
    rng = np.random.default_rng(5)
    phone = mx.array(rng.standard_normal((b, t, cfg.phone_channels)).astype(np.float32))
    pitchf = np.tile(np.linspace(120, 260, t, dtype=np.float32), (b, 1))
    pitch = mx.array(np.clip(np.round(pitchf / 2), 1, 255).astype(np.int32))
    return phone, pitch, pitchf


def test_equal_seeds_give_equal_audio_and_different_seeds_differ(form):
    model = _model("v2_40k_f0")
    phone, pitch, pitchf = _inputs(model.cfg, 20)
    args = (phone, mx.array([20]), mx.array([0]))
    a = np.asarray(model.infer(*args, pitch=pitch, pitchf=pitchf, seed=7))
    b = np.asarray(model.infer(*args, pitch=pitch, pitchf=pitchf, seed=7))
    c = np.asarray(model.infer(*args, pitch=pitch, pitchf=pitchf, seed=8))
    assert a.shape == (1, 20 * model.cfg.upp)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_batch_with_padding_keeps_each_items_prior():
    """Sequence masks: a padded item's text-encoder output equals the item run alone."""
    model = _model("v1_48k_nof0")
    phone, _, _ = _inputs(model.cfg, 24, b=2)
    x_mask = synth.sequence_mask(mx.array([24, 15]), 24)
    m_batch, logs_batch = model.enc_p(phone, None, x_mask)
    alone_mask = synth.sequence_mask(mx.array([15]), 15)
    m_alone, logs_alone = model.enc_p(phone[1:, :15], None, alone_mask)
    np.testing.assert_allclose(np.asarray(m_batch[1, :15]), np.asarray(m_alone[0]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(logs_batch[1, :15]), np.asarray(logs_alone[0]), atol=1e-5)
    assert float(mx.abs(m_batch[1, 15:]).max()) == 0.0


def test_bad_inputs_are_refused_clearly():
    model = _model("v2_32k_f0")
    phone, pitch, pitchf = _inputs(model.cfg, 10)
    with pytest.raises(ValueError, match="pitch"):
        model.infer(phone, mx.array([10]), mx.array([0]))
    with pytest.raises(ValueError, match="speaker id"):
        model.infer(phone, mx.array([10]), mx.array([500]), pitch=pitch, pitchf=pitchf)
    with pytest.raises(ValueError, match="768-d"):
        model.infer(phone[..., :256], mx.array([10]), mx.array([0]), pitch=pitch, pitchf=pitchf)


@pytest.mark.parametrize("variant", ["v2_48k_f0", "v1_32k_nof0"])
def test_chunked_decoding_equals_one_pass(variant, form):
    """Decoding in pieces with receptive-field context reproduces the one-pass audio."""
    model = _model(variant)
    t = 90
    phone, pitch, pitchf = _inputs(model.cfg, t)
    kwargs = {"pitch": pitch, "pitchf": pitchf} if model.cfg.f0 else {}
    args = (phone, mx.array([t]), mx.array([1]))
    whole = np.asarray(model.infer(*args, **kwargs, seed=3, decode_chunk_frames=None))
    pieces = np.asarray(model.infer(*args, **kwargs, seed=3, decode_chunk_frames=17))
    assert pieces.shape == whole.shape
    # same inputs per kept sample; only float32 summation order may differ (~1e-7 of full scale)
    np.testing.assert_allclose(pieces, whole, atol=1e-5)


@pytest.mark.parametrize("variant", ["v2_48k_f0", "v1_32k_nof0"])
def test_decoding_only_kept_frames_equals_that_part_of_one_pass(variant, form):
    """``keep_frames`` decodes a stretch with the rest as context; pieces crop every stage to
    what later stages reach. The kept audio must be the same part of the one-pass audio."""
    model = _model(variant)
    t, upp = 90, model.cfg.upp
    phone, pitch, pitchf = _inputs(model.cfg, t)
    kwargs = {"pitch": pitch, "pitchf": pitchf} if model.cfg.f0 else {}
    args = (phone, mx.array([t]), mx.array([1]))
    whole = np.asarray(model.infer(*args, **kwargs, seed=3, decode_chunk_frames=None))
    for keep, piece in [((20, 70), 17), ((0, 90), 11), ((5, 6), 200), ((31, 90), None)]:
        part = np.asarray(model.infer(*args, **kwargs, seed=3, decode_chunk_frames=piece, keep_frames=keep))
        assert part.shape == (1, (keep[1] - keep[0]) * upp)
        # same inputs per kept sample; only float32 summation order may differ (~1e-7 of full scale)
        np.testing.assert_allclose(part, whole[:, keep[0] * upp:keep[1] * upp], atol=1e-5)
    with pytest.raises(ValueError, match="keep"):
        model.infer(*args, **kwargs, keep_frames=(50, 50))


@pytest.mark.parametrize("t, rows", [(37, 1024), (300, 64), (5, 1024)])
def test_text_encoder_attention_numpy_form_equals_the_mlx_form(monkeypatch, t, rows, form):
    """On the CPU the unmasked text encoder runs in numpy (attention: band-added relative
    logits, [v | 1] sums); other devices and masked batches run the MLX form. Both agree to float32 rounding, also
    with several query-row blocks and with fewer frames than the relative window."""
    from mlx_rvc.models import attention

    rng = np.random.default_rng(t)
    attn = attention.MultiHeadAttention(192, 2, window_size=10)
    params = {k: mx.array(rng.standard_normal(v.shape).astype(np.float32) * 0.15)
              for k, v in tree_flatten(attn.parameters())}
    attn.load_weights(list(params.items()))
    x = mx.array(rng.standard_normal((2, t, 192)).astype(np.float32))
    monkeypatch.setattr(attention, "ATTENTION_ROWS", rows)
    fast = cpu_attention.attention(attn, np.asarray(x))
    slow = np.asarray(attn(x, None))
    scale = np.abs(slow).max()
    assert np.abs(fast - slow).max() < 2e-6 * scale  # float32 sums in another order


def test_text_encoder_numpy_stack_equals_the_mlx_stack():
    from mlx_rvc.models import attention

    rng = np.random.default_rng(0)
    enc = attention.Encoder(192, 768, 2, 2, 3)
    params = {k: mx.array(rng.standard_normal(v.shape).astype(np.float32) * 0.1 + (k.endswith("gamma")))
              for k, v in tree_flatten(enc.parameters())}
    enc.load_weights(list(params.items()))
    x = mx.array(rng.standard_normal((1, 150, 192)).astype(np.float32))
    with forms.use("cpu"):
        fast = np.asarray(enc(x, mx.ones((1, 150, 1))))  # numpy
    with forms.use("gpu"):
        slow = np.asarray(enc(x, mx.ones((1, 150, 1))))
    assert np.abs(fast - slow).max() < 1e-5 * np.abs(slow).max()  # two layers of float32 rounding (~1e-6)


def test_sine_source_counts_phase_wraps_like_the_reference_at_48k():
    """On unvoiced (flat-phase) stretches the wrap test sees rounding noise: the interpolated
    frame phase must round as torch's fused multiply-add does, or the phase ends up offset by
    whole cycles that float32 sin() turns into ~2e-4 relative error after the stretch."""
    from mlx_rvc.models.nsf import sine_excitation

    z = np.load(FIXTURES / "sine_source_48k.npz")
    out = sine_excitation(z["pitchf"], upp=480, sample_rate=48000, noise=z["sine_noise"]).astype(np.float64)
    ref = z["sine_waves"].astype(np.float64)
    # measured 2.9e-8: float32 rounding of a phase accumulated in float64 (2e-4 before the fix)
    assert np.sqrt(np.mean((out - ref) ** 2) / np.mean(ref**2)) < 1e-6
