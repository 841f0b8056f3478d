"""The 'does LCC help on my data?' recipe: the paired CV statistic, its glue, the warning signs."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sklcc.evaluation import cv_difference, paired_cv_difference, warning_signs

REPO = Path(__file__).resolve().parents[1]


def test_without_correction_it_is_the_paired_t_test():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.9, 0.02, 10), rng.normal(0.89, 0.02, 10)
    d = paired_cv_difference(a, b, test_train_ratio=0.0)
    assert d.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert d.mean_diff == pytest.approx(np.mean(a - b))


def test_corrected_interval_known_answer():
    # diffs 1, 2, 3: mean 2, sd 1; 3-fold CV: ratio 1/2; se = sqrt(1/3 + 1/2) = 0.9129
    d = paired_cv_difference([2.0, 4.0, 6.0], [1.0, 2.0, 3.0], test_train_ratio=0.5)
    se = math.sqrt(1 / 3 + 1 / 2)
    assert d.std_diff == 1.0
    assert d.ci_high - d.mean_diff == pytest.approx(stats.t.ppf(0.975, 2) * se)
    assert d.p_value == pytest.approx(2 * stats.t.sf(2 / se, 2))
    assert (d.wins, d.losses, d.n_splits) == (3, 0, 3)
    # the correction widens the interval of the naive test
    naive = paired_cv_difference([2.0, 4.0, 6.0], [1.0, 2.0, 3.0], test_train_ratio=0.0)
    assert naive.ci_low > d.ci_low and naive.p_value < d.p_value
    assert "better on 3 and worse on 0 of 3 splits" in str(d)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least 2 splits"):
        paired_cv_difference([0.9], [0.8], 0.25)
    with pytest.raises(ValueError, match="NaN or infinite"):
        paired_cv_difference([0.9, np.nan], [0.8, 0.8], 0.25)
    with pytest.raises(ValueError, match="test_train_ratio=-1"):
        paired_cv_difference([0.9, 0.8], [0.8, 0.8], -1)
    results = {"params": [{"lcc_weight": 0.0}, {"lcc_weight": 0.1}],
               "split0_test_score": [0.9, 0.91], "split1_test_score": [0.8, 0.82]}
    with pytest.raises(ValueError, match="matches no candidate"):
        cv_difference(results, {"lcc_weight": 0.3}, {"lcc_weight": 0.0}, 0.5)
    with pytest.raises(ValueError, match="fit the search first"):
        cv_difference(object(), {"lcc_weight": 0.1}, {"lcc_weight": 0.0}, 0.5)


def test_cv_difference_pairs_splits_of_a_real_search():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    X, y = load_iris(return_X_y=True)
    search = GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.01, 1.0]},
                          cv=StratifiedKFold(5, shuffle=True, random_state=0)).fit(X, y)
    d = cv_difference(search, {"C": 1.0}, {"C": 0.01}, test_train_ratio=1 / 4)
    res = search.cv_results_
    expected = [res[f"split{i}_test_score"][1] - res[f"split{i}_test_score"][0] for i in range(5)]
    np.testing.assert_allclose(d.diffs, expected)
    assert d.mean_diff > 0  # more C fits iris better


def test_warning_signs_from_history():
    good = [{"epoch": 2, "lcc_misclustered": 0.68, "lcc_uncovered_classes": 0,
             "lcc_no_target": 0.0},
            {"epoch": 10, "lcc_misclustered": 0.02, "lcc_uncovered_classes": 0,
             "lcc_no_target": 0.0}]
    assert warning_signs(good) == []
    flat = [{**good[0], "lcc_misclustered": 0.29}, {**good[1], "lcc_misclustered": 0.35,
                                                      "lcc_uncovered_classes": 4,
                                                      "lcc_no_target": 0.38}]
    signs = warning_signs(flat)
    assert len(signs) == 3 and "29.0% at epoch 2, 35.0% at epoch 10" in signs[0]
    assert "4" in signs[1] and "38.0%" in signs[2]
    with pytest.raises(ValueError, match="no LCC refresh"):
        warning_signs([{"epoch": 1, "train_loss": 1.0}])


@pytest.mark.slow
def test_does_lcc_help_example_runs(tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "does_lcc_help.py"), "--n-splits", "3",
         "--max-epochs", "6", "--plot", str(tmp_path / "history.png")],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "lcc_weight=0.1 - lcc_weight=0 (plain training)" in out and "% CI" in out
    assert "Warning signs" in out
    assert (tmp_path / "history.png").read_bytes()[:4] == b"\x89PNG"
