"""Does LCC help on *your* data? A paired cross-validated difference, and warning signs.

LCC costs training time, and on some data it does nothing or hurts (docs/benchmarks.md).
Before adopting it, compare it with plain training on the same folds: a search over a
space that includes ``lcc_weight=0`` (which trains exactly like plain skorch) gives, in
``cv_results_``, both arms' scores on every split, from the same initial weights and
batches when ``random_state`` is fixed. :func:`cv_difference` turns them into the mean
paired difference with a confidence interval; :func:`paired_cv_difference` is the
statistic alone, on two arrays of per-split scores. :func:`warning_signs` reads a fitted
net's refresh history for the patterns seen where LCC did not help.

The folds of cross-validation share training samples, so their scores are not
independent and the plain paired t-test is overconfident; the interval here uses the
corrected resampled t-test of Nadeau and Bengio (2003), which inflates the variance by
``1 / J + n_test / n_train`` for ``J`` splits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from .diagnostics import history_key

__all__ = ["CVDifference", "cv_difference", "paired_cv_difference", "warning_signs"]


@dataclass(frozen=True)
class CVDifference:
    """Paired difference of two configurations' scores over the same CV splits.

    Built by :func:`paired_cv_difference`; each parameter is kept as the attribute of
    the same name.

    Parameters
    ----------
    n_splits : int
        Number of splits (pairs).
    diffs : ndarray of shape (n_splits,)
        ``candidate - baseline`` on each split.
    mean_diff : float
        Mean of ``diffs``.
    std_diff : float
        Sample standard deviation of ``diffs``.
    ci_low, ci_high : float
        Confidence interval of the mean difference (corrected resampled t).
    p_value : float
        Two-sided p-value of the corrected resampled t-test (NaN when every
        difference is equal).
    wins, losses : int
        Splits where the candidate scored higher / lower.
    confidence : float
        Level of the interval.

    See Also
    --------
    sklcc.evaluation.paired_cv_difference : Builds it from two arrays of per-split scores.
    sklcc.evaluation.cv_difference : Builds it from a fitted search's ``cv_results_``.

    Examples
    --------
    >>> from sklcc.evaluation import paired_cv_difference
    >>> d = paired_cv_difference([0.9, 0.92, 0.91], [0.89, 0.9, 0.91], test_train_ratio=0.5)
    >>> d.n_splits, d.diffs.round(3).tolist(), d.wins, d.losses
    (3, [0.01, 0.02, 0.0], 2, 0)
    >>> print(d)
    +0.0100 [-0.0293, +0.0493] (95 % CI), p 0.388, better on 2 and worse on 0 of 3 splits

    """

    n_splits: int
    diffs: np.ndarray
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    wins: int
    losses: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict, for JSON.

        Returns
        -------
        dict
            Each field by name, with ``diffs`` as a list of floats.

        """
        out = asdict(self)
        out["diffs"] = self.diffs.tolist()
        return out

    def __str__(self) -> str:
        level = int(round(self.confidence * 100))
        return (f"{self.mean_diff:+.4f} [{self.ci_low:+.4f}, {self.ci_high:+.4f}] "
                f"({level} % CI), p {self.p_value:.3g}, better on {self.wins} and worse on "
                f"{self.losses} of {self.n_splits} splits")


def paired_cv_difference(candidate: Sequence[float], baseline: Sequence[float],
                         test_train_ratio: float, confidence: float = 0.95) -> CVDifference:
    """Mean paired difference over CV splits, with the corrected resampled t interval.

    Parameters
    ----------
    candidate, baseline : sequence of float
        Scores of the two configurations on the same splits, in the same order.
    test_train_ratio : float
        Test over training samples of one split: ``1 / (k - 1)`` for k-fold (repeated
        or not), ``test_size / train_size`` for shuffle splits. 0 gives the plain
        paired t-test, which is overconfident on cross-validation.
    confidence : float, default=0.95
        Level of the interval.

    Returns
    -------
    CVDifference
        ``candidate - baseline`` on each split, with its interval and p-value.

    Examples
    --------
    >>> d = paired_cv_difference([0.9, 0.92, 0.91, 0.93, 0.94],
    ...                          [0.89, 0.9, 0.91, 0.9, 0.92], test_train_ratio=0.25)
    >>> round(d.mean_diff, 3), round(d.ci_low, 4), round(d.ci_high, 4), round(d.p_value, 3)
    (0.016, -0.0052, 0.0372, 0.105)

    """
    a = np.asarray(candidate, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(
            f"candidate and baseline need one score per split, the same splits for both and "
            f"at least 2 splits; got shapes {a.shape} and {b.shape}."
        )
    if not np.isfinite(a).all() or not np.isfinite(b).all():
        raise ValueError("a split's score is NaN or infinite (a failed fit?); fix the failing "
                         "fit or drop that split from both arms before comparing.")
    if not test_train_ratio >= 0:
        raise ValueError(f"test_train_ratio={test_train_ratio!r} is invalid: expected the "
                         "number of test over training samples of one split, e.g. 0.25 for "
                         "5-fold CV.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} is invalid: expected a number in (0, 1).")
    diffs = a - b
    n = diffs.size
    mean, std = float(diffs.mean()), float(diffs.std(ddof=1))
    se = math.sqrt((1 / n + test_train_ratio) * std**2)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * se
    p_value = float(2 * stats.t.sf(abs(mean) / se, df=n - 1)) if se > 0 else math.nan
    return CVDifference(n, diffs, mean, std, mean - half, mean + half, p_value,
                        int((diffs > 0).sum()), int((diffs < 0).sum()), confidence)


def _row(cv_results: Mapping[str, Any], params: Mapping[str, Any]) -> int:
    rows = [i for i, p in enumerate(cv_results["params"])
            if all(k in p and p[k] == v for k, v in params.items())]
    if len(rows) != 1:
        found = "no candidate" if not rows else f"{len(rows)} candidates"
        raise ValueError(
            f"{dict(params)} matches {found} of the search (its params: "
            f"{list(cv_results['params'])}); name parameters that pick exactly one."
        )
    return rows[0]


def cv_difference(search: Any, candidate: Mapping[str, Any], baseline: Mapping[str, Any],
                  test_train_ratio: float, confidence: float = 0.95) -> CVDifference:
    """Paired difference between two candidates of a fitted search, split by split.

    Parameters
    ----------
    search : GridSearchCV, RandomizedSearchCV, LCCSearchCV or mapping
        A fitted search (or its ``cv_results_``) whose candidates were scored on the
        same splits; with a fixed ``random_state`` on the estimator, every candidate
        also starts from the same weights, so the pairs differ by the parameters alone.
    candidate, baseline : mapping
        Parameters picking one candidate each, e.g. ``{"lcc_weight": 0.1}`` and
        ``{"lcc_weight": 0.0}`` (plain training).
    test_train_ratio : float
        Test over training samples of one split (``1 / (k - 1)`` for k-fold).
    confidence : float, default=0.95
        Level of the interval.

    Returns
    -------
    CVDifference
        ``candidate - baseline`` on each split, with its interval and p-value.

    Examples
    --------
    >>> results = {"params": [{"lcc_weight": 0.0}, {"lcc_weight": 0.1}],
    ...            "split0_test_score": [0.90, 0.91], "split1_test_score": [0.80, 0.82],
    ...            "split2_test_score": [0.85, 0.85]}
    >>> d = cv_difference(results, {"lcc_weight": 0.1}, {"lcc_weight": 0.0}, 0.5)
    >>> d.diffs.round(3).tolist(), d.wins, d.losses
    ([0.01, 0.02, 0.0], 2, 0)

    """
    results = search if isinstance(search, Mapping) else getattr(search, "cv_results_", None)
    if results is None:
        raise ValueError(f"{type(search).__name__} has no cv_results_: fit the search first.")
    splits = sorted((k for k in results if k.startswith("split") and k.endswith("_test_score")),
                    key=lambda k: int(k[5:-len("_test_score")]))
    if not splits:
        raise ValueError("cv_results_ holds no per-split test scores (split<i>_test_score); "
                         "a search with a single scorer keeps them.")
    i, j = _row(results, candidate), _row(results, baseline)
    a = [results[k][i] for k in splits]
    b = [results[k][j] for k in splits]
    return paired_cv_difference(a, b, test_train_ratio, confidence)


def warning_signs(net: Any, late_fraction: float = 0.5) -> list[str]:
    """Read a fitted net's refresh history for the signs seen where LCC did not help.

    These are heuristics from this project's runs (docs/benchmarks.md), not a test:
    where LCC had room to act (full fine-tuning, where its estimated gain was positive but
    not demonstrable), the misclustered share fell steadily to a few percent by the end;
    where it did not help (a frozen backbone), it stayed flat or rose,
    and dense graphs left classes owning no cluster, whose misclustered samples get no
    target at all.

    Parameters
    ----------
    net : LCCClassifier or skorch History
        A fitted net, or its ``history``, with at least one refresh.
    late_fraction : float, default=0.5
        The misclustered share at the last refresh is "not falling" when it is above
        this fraction of the share at the first refresh.

    Returns
    -------
    list of str
        One sentence per sign found; empty when none is.

    Examples
    --------
    >>> history = [{"epoch": 2, "lcc_misclustered": 0.30, "lcc_uncovered_classes": 0,
    ...             "lcc_no_target": 0.0},
    ...            {"epoch": 10, "lcc_misclustered": 0.33, "lcc_uncovered_classes": 2,
    ...             "lcc_no_target": 0.2}]
    >>> for sign in warning_signs(history):
    ...     print(sign.split(":")[0])
    the misclustered share did not fall
    classes own no cluster at the last refresh
    misclustered samples without a target

    """
    history = getattr(net, "history", net)
    key = history_key("misclustered")
    rows = [row for row in history if row.get(key) is not None]
    if not rows:
        raise ValueError("the history holds no LCC refresh (no 'lcc_misclustered' entry): fit "
                         "an LCCClassifier for more epochs than lcc_warmup first.")
    first, last = rows[0], rows[-1]
    signs = []
    if len(rows) > 1 and last[key] > late_fraction * first[key]:
        signs.append(
            f"the misclustered share did not fall: {first[key]:.1%} at epoch {first['epoch']}, "
            f"{last[key]:.1%} at epoch {last['epoch']}; the term is not reshaping the latent "
            "space (classes that overlap there, or a layer the term cannot move)"
        )
    uncovered = last.get(history_key("uncovered_classes")) or 0
    if uncovered > 0:
        signs.append(
            f"classes own no cluster at the last refresh: {uncovered:g}; the graph merges "
            "classes (lower n_neighbors or raise louvain_resolution)"
        )
    no_target = last.get(history_key("no_target")) or 0
    if no_target > 0.01:
        signs.append(
            f"misclustered samples without a target: {no_target:.1%} of the training set "
            "is pulled nowhere"
        )
    return signs
