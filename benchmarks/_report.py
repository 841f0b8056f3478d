"""Statistics, tables, plots and machine facts for the benchmark reports.

The numbers a report states come from the small pure functions at the top of this
file (:func:`topk_accuracy`, :func:`mean_std`, :func:`paired_summary`,
:func:`median_timings`), each tested on hand-made inputs with known answers in
``tests/test_benchmark.py``. The rest turns a results dictionary into Markdown and
PNG files and never computes a statistic of its own.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "PairedSummary",
    "REFRESH_STATS",
    "REFRESH_TIMINGS",
    "machine_info",
    "mean_std",
    "median_timings",
    "paired_summary",
    "plot_accuracy_curves",
    "plot_refresh_diagnostics",
    "render_markdown",
    "topk_accuracy",
]

#: History keys of one refresh's cost, in pipeline order (``lcc_refresh_s`` is the total).
REFRESH_TIMINGS = ("lcc_refresh_s", "lcc_latents_s", "lcc_graph_s", "lcc_communities_s",
                   "lcc_assign_s", "lcc_index_s")
#: History keys of one refresh's clustering diagnostics.
REFRESH_STATS = ("lcc_misclustered", "lcc_uncovered_classes", "lcc_largest_cluster",
                 "lcc_n_clusters")


# --------------------------------------------------------------------------- statistics


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

    """

    n: int
    diffs: list
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float

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
    return PairedSummary(n, diffs.tolist(), mean, std, mean - half, mean + half, p_value,
                         confidence)


def median_timings(refreshes: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Median of each refresh timing over a list of refreshes.

    Parameters
    ----------
    refreshes : sequence of mapping
        One mapping per refresh holding (some of) the keys of :data:`REFRESH_TIMINGS`.

    Returns
    -------
    dict of str to float
        ``{key: median}`` for each key of :data:`REFRESH_TIMINGS`; NaN where no refresh
        has it.

    Examples
    --------
    >>> median_timings([{"lcc_refresh_s": 1.0}, {"lcc_refresh_s": 3.0}, {"lcc_refresh_s": 2.0}])[
    ...     "lcc_refresh_s"]
    2.0

    """
    out = {}
    for key in REFRESH_TIMINGS:
        values = [r[key] for r in refreshes if key in r and r[key] is not None]
        out[key] = float(np.median(values)) if values else math.nan
    return out


# --------------------------------------------------------------------------- machine


def machine_info(device: str) -> dict[str, Any]:
    """Describe where the benchmark ran.

    Parameters
    ----------
    device : str
        The torch device the nets trained on.

    Returns
    -------
    dict
        Platform, Python, CPU model and counts, torch version and threads, the device's
        name and the git commit of the working tree (``None`` outside a repository).

    """
    import torch

    cpu_model = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(torch.device(device))
    else:
        device_name = f"CPU ({cpu_model})"
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=here,
        ).stdout.strip()
        # Uncommitted changes to tracked files mean the commit alone does not say
        # which code produced the figures.
        dirty = bool(subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
            text=True, check=True, cwd=here,
        ).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "device_name": device_name,
        "git_commit": commit,
        "git_dirty": dirty,
    }


# --------------------------------------------------------------------------- markdown


def _fmt(x: float, digits: int = 2, scale: float = 1.0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x * scale:.{digits}f}"


def _fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return f"{p:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(results: Mapping[str, Any]) -> str:
    """Write the report's Markdown from a results dictionary.

    Parameters
    ----------
    results : mapping
        As written to ``results.json`` by ``benchmarks/cifar100.py``: ``config``,
        ``machine``, ``data``, ``methods``, ``runs``, ``summary``, ``paired``, ``cost``,
        ``refresh_timings``, ``refresh_stats``, ``tuning`` and ``plots``.

    Returns
    -------
    str
        The Markdown text. Accuracies are shown in percent, differences in points.

    """
    cfg, data, machine = results["config"], results["data"], results["machine"]
    methods = results["methods"]
    runs = results["runs"]
    seeds = cfg["seeds"]
    out = [
        f"# LCC benchmark: {cfg['dataset']}, {cfg['backbone']} @ {cfg['resolution']} px, "
        f"fine-tuning `{cfg['finetune']}`",
        "",
        f"Question: does Latent Cluster Correction improve fine-tuning over plain cross-entropy "
        f"with everything else equal (seeds {seeds}, {cfg['epochs']} epochs, AdamW lr "
        f"{cfg['lr']:g}, weight decay {cfg['weight_decay']:g}, cosine schedule, batch "
        f"{cfg['batch_size']})?",
        "",
        f"- Data: {data['n_train']} training / {data['n_test']} test images, "
        f"{data['n_classes']} classes; network input {data['input_shape']}. "
        "Hyper-parameters are never chosen on the test set.",
        f"- Machine: {machine['device_name']}; {machine['cpus_usable']} usable of "
        f"{machine['cpu_count']} CPUs (load average at start {machine['load_average']}); "
        f"torch {machine['torch']}, torch threads: {machine['torch_threads']}; "
        f"{machine['platform']}; commit {machine['git_commit']}"
        f"{' with uncommitted changes' if machine.get('git_dirty') else ''}.",
        f"- Command: `{cfg['command']}`",
        "",
        "## Test accuracy per seed (top-1 / top-5, %)",
        "",
    ]
    by_key = {(r["method"], r["seed"]): r for r in runs}
    rows = []
    for seed in seeds:
        row = [str(seed)]
        for m in methods:
            r = by_key.get((m, seed))
            cell = "–" if r is None else f"{_fmt(r['top1'], 2, 100)} / {_fmt(r['top5'], 2, 100)}"
            row.append(cell)
        rows.append(row)
    out += _table(["seed", *methods], rows)

    out += ["## Mean ± standard deviation over seeds (%)", ""]
    rows = []
    for m in methods:
        s = results["summary"][m]
        rows.append([m, s["n"], f"{_fmt(s['top1_mean'], 2, 100)} ± {_fmt(s['top1_std'], 2, 100)}",
                     f"{_fmt(s['top5_mean'], 2, 100)} ± {_fmt(s['top5_std'], 2, 100)}"])
    out += _table(["method", "seeds", "top-1", "top-5"], rows)

    out += [
        "## Paired difference (method − baseline, percentage points)",
        "",
        f"Per seed the two methods share initial weights, batch order and data. CI: "
        f"{int(results['confidence'] * 100)} % t interval over seeds; p: two-sided paired "
        "t-test (`scipy.stats.ttest_rel`); n/a with one seed or identical differences.",
        "",
    ]
    rows = []
    for pair in results["paired"]:
        for metric in ("top1", "top5"):
            s = pair[metric]
            wins = sum(d > 0 for d in s["diffs"])
            losses = sum(d < 0 for d in s["diffs"])
            rows.append([
                f"{pair['method']} vs {pair['baseline']}", metric, s["n"],
                _fmt(s["mean_diff"], 2, 100),
                f"[{_fmt(s['ci_low'], 2, 100)}, {_fmt(s['ci_high'], 2, 100)}]",
                _fmt_p(s["p_value"]), f"{wins}/{s['n'] - wins - losses}/{losses}",
                ", ".join(_fmt(d, 2, 100) for d in s["diffs"]),
            ])
    out += _table(["comparison", "metric", "n", "mean diff", "95% CI", "p", "win/tie/loss",
                   "per-seed diffs"], rows)

    cost = results["cost"]
    out += [
        "## Cost",
        "",
        "Fit wall time excludes the per-epoch test evaluation used for the curves. Time ratio: "
        "total fit time of the method over that of `ce` on the same seeds, measured in this "
        "run after an untimed warm-up fit, methods alternating within each seed in an order "
        f"rotated from seed to seed (per-seed ratios in results.json). Memory: "
        f"{cost['memory_note']}",
        "",
    ]
    rows = []
    for m in methods:
        c = cost["methods"][m]
        row = [m, _fmt(c["fit_s_mean"], 1), _fmt(c["epoch_s_mean"], 2),
               _fmt(c["ratio_to_ce"], 2), _fmt(c["peak_rss_mb"], 0), _fmt(c["rss_increase_mb"], 0)]
        if cost["cuda"]:
            row.append(_fmt(c.get("cuda_peak_mb"), 0))
        rows.append(row)
    header = ["method", "fit s (mean)", "s / epoch", "time ratio to ce", "peak RSS MB",
              "peak RSS increase MB"]
    out += _table(header + (["CUDA peak MB"] if cost["cuda"] else []), rows)
    if results.get("prepare_s") is not None:
        out += [f"Data preparation (loading, embedding or cache read): "
                f"{_fmt(results['prepare_s'], 1)} s.", ""]

    if results["refresh_timings"]:
        out += ["## Refresh time split (median over refreshes of all seeds, seconds)", ""]
        rows = []
        for m, t in results["refresh_timings"].items():
            rows.append([m, t["n_refreshes"], *(_fmt(t[k], 3) for k in REFRESH_TIMINGS)])
        out += _table(["method", "refreshes", "total", "latents", "graph", "communities",
                       "assign", "index"], rows)

        out += [
            "## Clustering at each refresh (mean over seeds)",
            "",
            "Misclustered: fraction of training samples in a cluster owned by another class "
            "(these get the LCC pull). Uncovered: classes owning no cluster. Largest: share of "
            "samples in the largest cluster.",
            "",
        ]
        for m, per_epoch in results["refresh_stats"].items():
            out += [f"### {m}", ""]
            rows = [[e["epoch"], _fmt(e["lcc_misclustered"], 3),
                     _fmt(e["lcc_uncovered_classes"], 1), _fmt(e["lcc_largest_cluster"], 3),
                     _fmt(e["lcc_n_clusters"], 1)]
                    for e in per_epoch]
            out += _table(["epoch", "misclustered", "uncovered classes", "largest cluster",
                           "clusters"], rows)

    tuning = results.get("tuning")
    if tuning:
        out += ["## Tuning", ""]
        if tuning.get("skipped"):
            out += [f"Skipped: {tuning['skipped']}", ""]
        else:
            out += [
                f"{tuning['n_trials']} Optuna trials per tuned method on a stratified "
                f"{int(tuning['valid_fraction'] * 100)} % validation split carved from the "
                f"training data (seed {tuning['seed']}); the test set is never seen. The best "
                "parameters are then trained on the whole training data for every seed.",
                "",
            ]
            rows = [[m, _fmt(t["best_valid_score"], 2, 100),
                     ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in t["best_params"].items()),
                     _fmt(t["search_s"], 0)]
                    for m, t in tuning["methods"].items()]
            out += _table(["method", "best valid top-1 %", "best parameters", "search s"], rows)

    out += ["## Plots", ""]
    out += [f"![{name}]({name})" for name in results["plots"]]
    out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- plots


def plot_accuracy_curves(runs: Sequence[Mapping[str, Any]], methods: Sequence[str],
                         path: Path) -> None:
    """Plot test top-1 accuracy per epoch: mean over seeds, shaded min to max.

    Parameters
    ----------
    runs : sequence of mapping
        Each with ``method`` and ``history`` holding a ``test_acc`` list.
    methods : sequence of str
        Methods to draw, in legend order.
    path : Path
        PNG file to write.

    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in methods:
        curves = [r["history"]["test_acc"] for r in runs if r["method"] == m]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        arr = np.asarray([c[:length] for c in curves], dtype=float) * 100
        epochs = np.arange(1, length + 1)
        (line,) = ax.plot(epochs, arr.mean(axis=0), label=f"{m} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(epochs, arr.min(axis=0), arr.max(axis=0), alpha=0.15,
                            color=line.get_color())
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title("Test accuracy per epoch (for display only; never used for selection)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_refresh_diagnostics(refresh_stats: Mapping[str, Sequence[Mapping[str, float]]],
                             path: Path, keys: Sequence[str] = REFRESH_STATS) -> None:
    """Plot clustering diagnostics per refresh epoch, one panel per key.

    Parameters
    ----------
    refresh_stats : mapping of str to sequence of mapping
        Per method, one row per refresh epoch with ``epoch`` and the ``keys``.
    path : Path
        PNG file to write.
    keys : sequence of str, default=REFRESH_STATS
        Diagnostics to draw.

    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    labels = {"lcc_misclustered": "misclustered fraction",
              "lcc_uncovered_classes": "classes owning no cluster",
              "lcc_largest_cluster": "largest cluster share",
              "lcc_n_clusters": "number of clusters"}
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for m, rows in refresh_stats.items():
            ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], marker="o", label=m)
        ax.set_xlabel("epoch of refresh")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(labels.get(key, key))
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle("LCC clustering at each refresh (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
