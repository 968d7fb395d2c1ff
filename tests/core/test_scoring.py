"""Score rules, the valid region and good-part statistics (files refused on any mismatch)."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.core.scoring import GoodStats, ScoreRule, ScoringError, image_scores


def test_max_and_topk_rules_over_the_valid_region():
    maps = np.zeros((2, 10, 10), np.float32)
    maps[0, 0, 0] = 9.0                      # one hot pixel
    maps[1, 4:6, 4:6] = 3.0                  # a 4-pixel region
    assert image_scores(maps).tolist() == [9.0, 3.0]
    top = image_scores(maps, ScoreRule("topk", 0.04))
    np.testing.assert_allclose(top, [9.0 / 4, 3.0])
    valid = np.ones((10, 10), bool)
    valid[0, 0] = False
    assert image_scores(maps, ScoreRule(), valid).tolist() == [0.0, 3.0]
    assert ScoreRule.parse("topk:0.01") == ScoreRule("topk", 0.01) and ScoreRule.parse("max") == ScoreRule()
    assert ScoreRule.from_dict(ScoreRule("topk", 0.02).describe()) == ScoreRule("topk", 0.02)


def test_non_finite_or_empty_regions_score_nan():
    maps = np.ones((2, 4, 4), np.float32)
    maps[0, 1, 1] = np.nan
    valid = np.ones((2, 4, 4), bool)
    valid[1] = False
    scores = image_scores(maps, ScoreRule(), valid)
    assert np.isnan(scores).all()


@pytest.mark.parametrize("rule", [("median", 0.0), ("topk", 0.0), ("topk", 0.9)])
def test_bad_rules_are_refused(rule):
    with pytest.raises(ScoringError):
        ScoreRule(*rule)


def test_statistics_normalise_a_hot_spot_every_good_part_has(tmp_path):
    rng = np.random.default_rng(0)
    good = rng.normal(0.2, 0.01, (20, 32, 32)).astype(np.float32)
    good[:, :4, :4] += rng.normal(1.0, 0.2, (20, 1, 1)).astype(np.float32)   # bright on every good part
    stats = GoodStats.fit(good, smooth_sigma=0)
    part = np.full((1, 32, 32), 0.2, np.float32)
    part[0, :4, :4] = 1.2                                                       # a good part's hot spot
    defect = part.copy()
    defect[0, 20, 20] = 0.5                                                     # a small real anomaly
    raw = image_scores(np.concatenate([part, defect]))
    assert raw[0] == raw[1]                          # raw max: the hot spot hides the defect
    z = image_scores(stats.apply(np.concatenate([part, defect])))
    assert z[1] > 5 * max(z[0], 1.0)
    sha = stats.save(tmp_path / "s.npz")
    loaded = GoodStats.load(tmp_path / "s.npz", sha256=sha, shape=(32, 32))
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    with pytest.raises(ScoringError, match="do not match"):
        GoodStats.load(tmp_path / "s.npz", sha256="0" * 64)
    with pytest.raises(ScoringError, match="inspects at"):
        GoodStats.load(tmp_path / "s.npz", shape=(32, 64))
    tampered = GoodStats(stats.mean + 1e-3, stats.inv_std, stats.n_images)
    tampered.save(tmp_path / "s.npz")
    with pytest.raises(ScoringError, match="do not match"):
        GoodStats.load(tmp_path / "s.npz", sha256=sha)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ScoringError, match="cannot read"):
        GoodStats.load(tmp_path / "bad.npz")
    with pytest.raises(ScoringError, match="shape|match"):
        stats.apply(np.zeros((1, 16, 16), np.float32))
