"""The pitch benchmark's measures (mlx_rvc.pitch_bench), on contours whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mlx_rvc.pitch_bench import scores, summarise


def test_measures_count_what_they_name():
    truth = np.array([100.0, 100.0, 100.0, 100.0, 100.0, 0.0, 0.0, 0.0])
    est = np.array([
        100.0 * 2 ** (49 / 1200),  # within 50 cents: a hit
        100.0 * 2 ** (51 / 1200),  # 51 cents off: a miss, not gross (< 20 %)
        200.0,  # octave error: a chroma hit, gross
        0.0,  # voiced frame called unvoiced: recall miss
        130.0,  # 454 cents off: gross, no hit
        0.0,
        150.0,  # false alarm
        0.0,
    ])
    s = summarise([scores(truth, est)])
    assert s["rpa"] == pytest.approx(1 / 5)
    assert s["rca"] == pytest.approx(2 / 5)
    assert s["voicing_recall"] == pytest.approx(4 / 5)
    assert s["voicing_false_alarm"] == pytest.approx(1 / 3)
    assert s["gross_error"] == pytest.approx(2 / 4)  # of the 4 frames voiced in both


def test_pooling_weights_frames_not_clips():
    a = scores(np.full(10, 100.0), np.full(10, 100.0))  # 10 hits
    b = scores(np.full(30, 100.0), np.zeros(30))  # 30 misses
    assert summarise([a, b])["rpa"] == pytest.approx(10 / 40)
    assert scores(np.full(5, 100.0), np.full(7, 100.0))["frames"] == 5  # common frames only
