"""The statistics a benchmark report states.

Small pure functions (:func:`topk_accuracy`, :func:`mean_std`, :func:`paired_summary`,
:func:`median_timings`), each tested on hand-made inputs with known answers in
``tests/test_benchmark.py``, and :func:`summarize`, which applies them to the runs of
one benchmark. The report (:mod:`lccbench.report`) only formats what they return.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from sklcc.diagnostics import STAT_KEYS, TIMING_KEYS, history_key

from .measure import MEMORY_NOTES

__all__ = ["PairedSummary", "comparison_pairs", "mean_std", "median_timings", "paired_summary",
           "summarize", "topk_accuracy", "verdict"]


def topk_accuracy(proba: np.ndarray, y: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores.

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
        Class scores; column ``j`` scores class code ``j``.
    y : ndarray of shape (n_samples,)
        True class codes in ``0..n_classes-1``.
    k : int, default=1
        How many top-scored classes count as a hit; ``k >= n_classes`` gives 1.

    Returns
    -------
    float
        Accuracy in [0, 1]. Ties are broken towards the lower class code, as by
        ``argmax``.

    Examples
    --------
    >>> import numpy as np
    >>> proba = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    >>> topk_accuracy(proba, np.array([2, 2]), k=1), topk_accuracy(proba, np.array([2, 2]), k=2)
    (0.0, 1.0)

    """
    proba = np.asarray(proba)
    y = np.asarray(y).reshape(-1)
    if proba.ndim != 2 or len(proba) != len(y):
        raise ValueError(
            f"proba has shape {proba.shape} but y has {len(y)} labels; expected "
            "(n_samples, n_classes) scores with one label per row."
        )
    if k < 1:
        raise ValueError(f"k={k!r} is invalid: expected an integer >= 1.")
    k = min(int(k), proba.shape[1])
    # A stable sort of the negated scores keeps the lower code first among ties.
    top = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == y[:, None]).any(axis=1)))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``) of per-seed values.

    Parameters
    ----------
    values : sequence of float
        One value per seed.

    Returns
    -------
    mean : float
    std : float
        NaN with fewer than two values.

    Examples
    --------
    >>> mean_std([1.0, 2.0, 3.0])
    (2.0, 1.0)

    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else math.nan
    return float(np.mean(arr)), std


@dataclass(frozen=True)
class PairedSummary:
    """Paired comparison of a method with a baseline over the same seeds.

    Attributes
    ----------
    n : int
        Number of seeds (pairs).
    diffs : list of float
        ``treatment - baseline`` per seed, in seed order.
    mean_diff : float
        Mean of ``diffs``.
    std_diff : float
        Sample standard deviation of ``diffs`` (NaN with one seed).
    ci_low, ci_high : float
        Two-sided confidence interval of the mean difference from the t distribution
        with ``n - 1`` degrees of freedom (NaN with one seed).
    p_value : float
        Two-sided paired t-test (``scipy.stats.ttest_rel``); NaN with one seed or when
        every difference is the same (the test is undefined then).
    confidence : float
        Confidence level of the interval.
    wilcoxon_p : float
        Two-sided Wilcoxon signed-rank test of the differences
        (``scipy.stats.wilcoxon``, exact without ties or zeros); NaN with one seed or
        when every difference is zero. With ``n`` pairs it cannot fall below
        ``2 / 2**n`` (0.125 with 4 seeds, 0.002 with 10).

    """

    n: int
    diffs: list
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float
    wilcoxon_p: float = math.nan

    def to_dict(self) -> dict:
        """Plain-dict form for JSON."""
        return asdict(self)


def paired_summary(
    treatment: Sequence[float], baseline: Sequence[float], confidence: float = 0.95
) -> PairedSummary:
    """Mean paired difference, its t confidence interval and the paired t-test p-value.

    Parameters
    ----------
    treatment, baseline : sequence of float
        One value per seed, the same seeds in the same order.
    confidence : float, default=0.95
        Confidence level of the interval.

    Returns
    -------
    PairedSummary

    Examples
    --------
    >>> s = paired_summary([2.0, 4.0, 4.0, 6.0], [1.0, 2.0, 3.0, 4.0])
    >>> s.mean_diff, round(s.ci_low, 4), round(s.ci_high, 4), round(s.p_value, 4)
    (1.5, 0.5813, 2.4187, 0.0138)
    >>> s.wilcoxon_p  # four positive differences: the smallest p four pairs allow
    0.125

    """
    a = np.asarray(treatment, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"paired values need two 1-D sequences of the same non-zero length, got shapes "
            f"{a.shape} and {b.shape}; pass one value per seed for both methods."
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} is invalid: expected a number in (0, 1).")
    diffs = a - b
    n = diffs.size
    mean = float(diffs.mean())
    if n < 2:
        return PairedSummary(n, diffs.tolist(), mean, math.nan, math.nan, math.nan, math.nan,
                             confidence)
    std = float(diffs.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    p_value = float(stats.ttest_rel(a, b).pvalue) if std > 0 else math.nan
    wilcoxon_p = (float(stats.wilcoxon(diffs, alternative="two-sided").pvalue)
                  if np.any(diffs != 0) else math.nan)
    return PairedSummary(n, diffs.tolist(), mean, std, mean - half, mean + half, p_value,
                         confidence, wilcoxon_p)


def verdict(summary: PairedSummary | Mapping[str, Any], min_effect: float) -> str:
    """Read a paired difference by the rule pre-registered in docs/benchmarks.md.

    Parameters
    ----------
    summary : PairedSummary or mapping
        The primary comparison (``ci_low``, ``ci_high``, in the metric's units).
    min_effect : float
        The smallest gain worth LCC's cost, in the same units (0.003 for 0.3 points
        of accuracy).

    Returns
    -------
    str
        ``"confirmed"``: the interval lies above 0 and reaches ``min_effect``;
        ``"confirmed, below min_effect"``: above 0 but wholly below ``min_effect``;
        ``"refuted (harm)"``: wholly below 0; ``"refuted"``: it includes 0 and excludes
        every gain of ``min_effect`` or more; ``"inconclusive"``: it includes 0 and
        ``min_effect``; ``"undefined"`` without an interval.

    Examples
    --------
    >>> verdict({"ci_low": 0.001, "ci_high": 0.009}, 0.003)
    'confirmed'
    >>> verdict({"ci_low": 0.0005, "ci_high": 0.0025}, 0.003)
    'confirmed, below min_effect'
    >>> verdict({"ci_low": -0.002, "ci_high": 0.002}, 0.003)
    'refuted'
    >>> verdict({"ci_low": -0.002, "ci_high": 0.004}, 0.003)
    'inconclusive'
    >>> verdict({"ci_low": -0.004, "ci_high": -0.001}, 0.003)
    'refuted (harm)'

    """
    if isinstance(summary, PairedSummary):
        summary = summary.to_dict()
    low, high = summary["ci_low"], summary["ci_high"]
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "undefined"
    if low > 0:
        return "confirmed" if high >= min_effect else "confirmed, below min_effect"
    if high < 0:
        return "refuted (harm)"
    return "refuted" if high < min_effect else "inconclusive"


#: Label-smoothed arms (``+ls``) and the arm each is compared with besides ``ce``.
_CONTROL = "ce+ls"


def comparison_pairs(methods: Sequence[str]) -> list[tuple[str, str]]:
    """List the (method, baseline) pairs a report states, in order.

    Every method against ``ce``; with the label-smoothing control ``ce+ls``, also
    ``lcc`` and ``lcc+ls`` against it and ``lcc+ls`` against ``lcc``; ``lcc-tuned``
    against ``ce-tuned``.

    Examples
    --------
    >>> comparison_pairs(["ce", "lcc", "ce+ls", "lcc+ls"])  # doctest: +NORMALIZE_WHITESPACE
    [('lcc', 'ce'), ('ce+ls', 'ce'), ('lcc+ls', 'ce'), ('lcc', 'ce+ls'), ('lcc+ls', 'ce+ls'),
     ('lcc+ls', 'lcc')]

    """
    pairs = [(m, "ce") for m in methods if m != "ce"]
    if _CONTROL in methods:
        pairs += [(m, _CONTROL) for m in ("lcc", "lcc+ls") if m in methods]
        if "lcc+ls" in methods and "lcc" in methods:
            pairs.append(("lcc+ls", "lcc"))
    if "lcc-tuned" in methods and "ce-tuned" in methods:
        pairs.append(("lcc-tuned", "ce-tuned"))
    return pairs


def median_timings(refreshes: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Median of each refresh timing over a list of refreshes.

    Parameters
    ----------
    refreshes : sequence of mapping
        One mapping per refresh holding (some of) the history keys of
        :data:`sklcc.diagnostics.TIMING_KEYS` (``lcc_refresh_s``, ...).

    Returns
    -------
    dict of str to float
        ``{history key: median}`` for each timing key, in the order of ``TIMING_KEYS``;
        NaN where no refresh has it.

    Examples
    --------
    >>> median_timings([{"lcc_refresh_s": 1.0}, {"lcc_refresh_s": 3.0}, {"lcc_refresh_s": 2.0}])[
    ...     "lcc_refresh_s"]
    2.0

    """
    out = {}
    for key in map(history_key, TIMING_KEYS):
        values = [r[key] for r in refreshes if r.get(key) is not None]
        out[key] = float(np.median(values)) if values else math.nan
    return out


#: Largest share of the machine's CPU other processes may take during both fits of a
#: seed for their fit-time ratio to count as a cost measurement (docs/benchmarks.md,
#: section P, "Cost").
QUIET_SHARE = 0.05


def quiet_time_ratio(runs: Sequence[Mapping[str, Any]], method: str, baseline: str = "ce",
                     max_other_share: float = QUIET_SHARE) -> dict[str, Any]:
    """Fit-time ratio of ``method`` to ``baseline`` over the seeds measured on a quiet machine.

    A seed counts when both its runs recorded ``provenance.other_cpu_share`` below
    ``max_other_share``: a fit that shared the CPU with another job is slower for a reason
    that has nothing to do with the method.

    Parameters
    ----------
    runs : sequence of mapping
        Finished runs (``method``, ``seed``, ``fit_s`` and ``provenance``).
    method, baseline : str
        The two methods compared.
    max_other_share : float, default=QUIET_SHARE
        Largest share of the CPU other processes may have taken during each of the two fits.

    Returns
    -------
    dict
        ``seeds`` (the quiet seeds), ``n_pairs``, ``ratio`` (total fit time of ``method``
        over that of ``baseline`` on those seeds; NaN without one) and ``ratios`` (per
        seed), with ``max_other_share``.

    Examples
    --------
    >>> def run(m, seed, fit_s, share):
    ...     return {"method": m, "seed": seed, "fit_s": fit_s,
    ...             "provenance": {"other_cpu_share": share}}
    >>> runs = [run("ce", 0, 100, 0.0), run("lcc", 0, 120, 0.01),
    ...         run("ce", 1, 200, 0.4), run("lcc", 1, 120, 0.0)]
    >>> q = quiet_time_ratio(runs, "lcc")
    >>> q["seeds"], q["ratio"]
    ([0], 1.2)

    """
    def share(run: Mapping[str, Any]) -> float:
        value = (run.get("provenance") or {}).get("other_cpu_share")
        return math.inf if value is None else value

    by = {m: {r["seed"]: r for r in runs if r["method"] == m} for m in (method, baseline)}
    seeds = sorted(s for s in set(by[method]) & set(by[baseline])
                   if share(by[method][s]) < max_other_share
                   and share(by[baseline][s]) < max_other_share)
    total = sum(by[baseline][s]["fit_s"] for s in seeds)
    return {"seeds": seeds, "n_pairs": len(seeds), "max_other_share": max_other_share,
            "ratio": sum(by[method][s]["fit_s"] for s in seeds) / total if seeds else math.nan,
            "ratios": [by[method][s]["fit_s"] / by[baseline][s]["fit_s"] for s in seeds]}


def summarize(runs: list[dict[str, Any]], methods: list[str],
              confidence: float = 0.95) -> dict[str, Any]:
    """Per-method summaries, paired differences, cost and refresh diagnostics.

    Parameters
    ----------
    runs : list of dict
        One per fit (see ``fit_one`` in ``benchmarks/cifar100.py``).
    methods : list of str
        Methods in report order; ``"ce"`` is the baseline of every paired difference.
    confidence : float, default=0.95
        Level of the paired confidence intervals.

    Returns
    -------
    dict
        ``summary``, ``paired`` (see :func:`comparison_pairs`), ``additivity`` (with
        ``ce``, ``lcc``, ``ce+ls`` and ``lcc+ls``: LCC's gain with label smoothing
        against its gain without, per seed; else None), ``cost`` (with ``quiet``: per
        method, :func:`quiet_time_ratio` to ``ce``), ``refresh_timings``
        and ``refresh_stats``.

    """
    by = {m: {r["seed"]: r for r in runs if r["method"] == m} for m in methods}
    summary = {}
    for m in methods:
        seeds = sorted(by[m])
        t1 = mean_std([by[m][s]["top1"] for s in seeds])
        t5 = mean_std([by[m][s]["top5"] for s in seeds])
        summary[m] = {"n": len(seeds), "top1_mean": t1[0], "top1_std": t1[1],
                      "top5_mean": t5[0], "top5_std": t5[1]}

    paired = []
    for m, base in comparison_pairs(methods):
        seeds = sorted(set(by[m]) & set(by[base]))
        if not seeds:
            continue
        entry = {"method": m, "baseline": base, "seeds": seeds}
        for metric in ("top1", "top5"):
            entry[metric] = paired_summary([by[m][s][metric] for s in seeds],
                                           [by[base][s][metric] for s in seeds],
                                           confidence).to_dict()
        paired.append(entry)
    additivity = None
    arms = ("ce", "lcc", _CONTROL, "lcc+ls")
    if all(a in methods for a in arms):
        # Does LCC add to label smoothing? (lcc+ls - ce+ls) - (lcc - ce) per seed: 0 when
        # the two add up, negative when label smoothing takes LCC's gain away.
        seeds = sorted(set.intersection(*(set(by[a]) for a in arms)))
        if seeds:
            additivity = {"seeds": seeds}
            for metric in ("top1", "top5"):
                gain_ls = [by["lcc+ls"][s][metric] - by[_CONTROL][s][metric] for s in seeds]
                gain = [by["lcc"][s][metric] - by["ce"][s][metric] for s in seeds]
                additivity[metric] = paired_summary(gain_ls, gain, confidence).to_dict()

    cost_methods = {}
    for m in methods:
        seeds = sorted(by[m])
        rows = [by[m][s] for s in seeds]
        shared = [s for s in seeds if s in by["ce"]]
        ratios = [by[m][s]["fit_s"] / by["ce"][s]["fit_s"] for s in shared]
        # Ratio of total times: one slow fit (a busy machine) moves it less than a mean
        # of per-seed ratios would.
        ratio = (sum(by[m][s]["fit_s"] for s in shared) / sum(by["ce"][s]["fit_s"] for s in shared)
                 if shared else math.nan)
        cuda = [r["cuda_peak_mb"] for r in rows if r["cuda_peak_mb"] is not None]
        cost_methods[m] = {
            "fit_s_mean": mean_std([r["fit_s"] for r in rows])[0],
            "epoch_s_mean": mean_std([r["epoch_s"] for r in rows])[0],
            "ratio_to_ce": ratio, "ratios_to_ce": ratios,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
            "rss_increase_mb": max(r["rss_increase_mb"] for r in rows),
            "cuda_peak_mb": max(cuda) if cuda else None,
        }
    memory_method = runs[0]["memory_method"]
    quiet = {m: quiet_time_ratio(runs, m) for m in methods if m != "ce" and "ce" in by
             and any(r.get("provenance") for r in runs)}
    cost = {"methods": cost_methods, "memory_method": memory_method, "quiet": quiet,
            "memory_note": MEMORY_NOTES[memory_method],
            "cuda": any(r["cuda_peak_mb"] is not None for r in runs)}

    refresh_timings, refresh_stats = {}, {}
    for m in methods:
        refreshes = [f for s in sorted(by[m]) for f in by[m][s]["refreshes"]]
        if not refreshes:
            continue
        refresh_timings[m] = {"n_refreshes": len(refreshes), **median_timings(refreshes)}
        keys = [k for k in map(history_key, STAT_KEYS) if all(k in f for f in refreshes)]
        epochs = sorted({f["epoch"] for f in refreshes})
        refresh_stats[m] = [
            {"epoch": e, **{k: float(np.mean([f[k] for f in refreshes if f["epoch"] == e]))
                            for k in keys}}
            for e in epochs
        ]
    return {"summary": summary, "paired": paired, "additivity": additivity, "cost": cost,
            "refresh_timings": refresh_timings, "refresh_stats": refresh_stats}
