import numpy as np
import pytest

from pipeline.metrics.bootstrap import interval, paired, ratio_of_sums, spearman


def test_a_constant_sample_has_a_point_interval():
    result = interval(np.full(30, 0.5), rounds=200)  # 0.5: a mean of 0.5s is exact in binary
    assert (result.value, result.low, result.high) == (0.5, 0.5, 0.5)


def test_the_interval_holds_the_statistic_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    small = interval(rng.normal(size=20), rounds=500)
    large = interval(rng.normal(size=2000), rounds=500)
    assert small.low <= small.value <= small.high
    assert large.high - large.low < (small.high - small.low) / 4


def test_clusters_resample_whole_groups():
    # Two groups of constant values: every resample's mean is one of 0, 0.5, 1 (by group counts), so with
    # clusters the interval spans the groups; resampling single values would give a narrow interval near 0.5.
    values = np.array([0.0] * 50 + [1.0] * 50)
    groups = [0] * 50 + [1] * 50
    clustered = interval(values, groups=groups, rounds=400)
    single = interval(values, rounds=400)
    assert (clustered.low, clustered.high) == (0.0, 1.0)
    assert 0.35 < single.low < 0.5 < single.high < 0.65


def test_the_same_seed_gives_the_same_interval():
    data = np.random.default_rng(2).random(40)
    assert interval(data, seed=3, rounds=300) == interval(data, seed=3, rounds=300)


def test_a_method_against_itself_differs_by_zero_with_p_one():
    a = np.random.default_rng(4).random(50)
    result = paired(a, a, rounds=300)
    assert (result.difference.value, result.difference.low, result.difference.high) == (0.0, 0.0, 0.0)
    assert result.p_value == 1.0 and not result.significant


def test_a_uniform_gain_is_significant_and_its_size_exact():
    a = np.random.default_rng(5).random(60)
    result = paired(a + 0.1, a, rounds=300)
    assert result.difference.value == pytest.approx(0.1)
    assert result.difference.low == pytest.approx(0.1) and result.difference.high == pytest.approx(0.1)
    assert result.significant and result.p_value == 0.0


def test_paired_refuses_arrays_of_different_shapes():
    with pytest.raises(ValueError, match="one shape"):
        paired([1.0, 2.0], [1.0], rounds=10)


def test_ratio_of_sums_is_ciou():
    rows = np.array([[1.0, 4.0], [3.0, 4.0]])
    assert ratio_of_sums(rows) == 0.5
    assert ratio_of_sums(np.zeros((2, 2))) == 0.0


def test_spearman_ranks_ties_at_their_mean_and_is_nan_when_a_column_is_constant():
    # x ranks 1..5; y = (0, 0, 1, 1, 2) ranks (1.5, 1.5, 3.5, 3.5, 5): Pearson of the ranks = 9 / sqrt(10 * 9).
    rows = np.column_stack([np.arange(5.0), [0.0, 0.0, 1.0, 1.0, 2.0]])
    assert spearman(rows) == pytest.approx(9 / np.sqrt(90))
    assert spearman(np.column_stack([np.arange(5.0), -(np.arange(5.0) ** 3)])) == pytest.approx(-1.0)
    assert np.isnan(spearman(np.column_stack([np.arange(5.0), np.ones(5)])))
