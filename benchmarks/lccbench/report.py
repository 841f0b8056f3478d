"""The benchmark's report: results to JSON-safe values, Markdown and PNG plots.

Nothing here computes a statistic (they come from :mod:`lccbench.stats`); the names
of the refresh diagnostics come from :mod:`sklcc.diagnostics`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sklcc.diagnostics import STAT_KEYS, TIMING_KEYS, history_key

from .config import GRID_PREFIX, parse_grid_method

__all__ = ["jsonable", "plot_accuracy_curves", "plot_refresh_diagnostics", "render_markdown"]

#: How the report names each refresh statistic (columns, plot axes), and the digits
#: its table shows (means over seeds: counts keep one decimal).
STAT_LABELS = {"n_clusters": ("clusters", 1), "modularity": ("modularity", 3),
               "misclustered": ("misclustered", 3), "uncovered_classes": ("uncovered classes", 1),
               "largest_cluster": ("largest cluster", 3), "no_target": ("no target", 3),
               "n_representatives": ("representatives", 0)}


def jsonable(obj: Any) -> Any:
    """Return ``obj`` with numpy values made Python and NaN / infinity made None (strict JSON).

    Examples
    --------
    >>> import numpy as np
    >>> jsonable({"a": np.float32(0.5), "b": [float("nan")], 1: np.arange(2)})
    {'a': 0.5, 'b': [None], '1': [0, 1]}

    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


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


def _optimizer(cfg: Mapping[str, Any]) -> str:
    name = cfg.get("optimizer", "adamw")
    if name == "sgd":
        return f"SGD (momentum {cfg.get('momentum', 0.9):g})"
    return "AdamW"


def _grid_table(results: Mapping[str, Any]) -> list[str]:
    """Lay the published grid out as the paper's table.

    One row per placement and weight, one column per k; each cell holds LCC's mean
    top-1, its paired difference to CE with the confidence interval, and the p-value.
    Empty without grid cells.
    """
    cells = {}
    for pair in results["paired"]:
        if pair["baseline"] == "ce" and pair["method"].startswith(GRID_PREFIX):
            cells[parse_grid_method(pair["method"])] = pair
    if not cells:
        return []
    ks = sorted({k for _, k, _ in cells})
    rows_keys = sorted({(layer, w) for w, _, layer in cells}, key=lambda t: (t[0], -t[1]))
    ce = results["summary"]["ce"]
    out = [
        "## The published grid, laid out as the paper's table (top-1 %)",
        "",
        f"Baseline (ce): {_fmt(ce['top1_mean'], 2, 100)} ± {_fmt(ce['top1_std'], 2, 100)} "
        f"over {ce['n']} seeds. Each cell: LCC's mean top-1; below it the paired difference to "
        f"ce in points with its {int(results['confidence'] * 100)} % CI, the p-value and the "
        "number of seeds. A cell not run is '–'.",
        "",
    ]
    rows = []
    for layer, w in rows_keys:
        row = [layer, f"{w:g}"]
        for k in ks:
            pair = cells.get((w, k, layer))
            if pair is None:
                row.append("–")
                continue
            d, m = pair["top1"], results["summary"][pair["method"]]
            row.append(f"{_fmt(m['top1_mean'], 2, 100)}<br>{_fmt(d['mean_diff'], 2, 100)} "
                       f"[{_fmt(d['ci_low'], 2, 100)}, {_fmt(d['ci_high'], 2, 100)}], "
                       f"p {_fmt_p(d['p_value'])}, n {d['n']}")
        rows.append(row)
    return out + _table(["placement", "weight", *(f"k = {k}" for k in ks)], rows)


def _additivity(results: Mapping[str, Any]) -> list[str]:
    """Whether LCC's gain survives label smoothing (empty without all four arms)."""
    add = results.get("additivity")
    if not add:
        return []
    out = ["### Do LCC and label smoothing add up?", "",
           "Per seed, LCC's gain with label smoothing (`lcc+ls` − `ce+ls`) minus its gain "
           "without (`lcc` − `ce`): 0 when the two add up, negative when label smoothing "
           "takes LCC's gain away.", ""]
    rows = []
    for metric in ("top1", "top5"):
        s = add[metric]
        rows.append([metric, s["n"], _fmt(s["mean_diff"], 2, 100),
                     f"[{_fmt(s['ci_low'], 2, 100)}, {_fmt(s['ci_high'], 2, 100)}]",
                     _fmt_p(s["p_value"]), ", ".join(_fmt(d, 2, 100) for d in s["diffs"])])
    return out + _table(["metric", "n", "mean", "95% CI", "p", "per seed"], rows)


def _provenance(results: Mapping[str, Any]) -> list[str]:
    """Which commit, engines and machine load each run had (empty for older results)."""
    runs = [r for r in results["runs"] if r.get("provenance")]
    commits = results.get("commits")
    if not commits:
        return []
    out = ["## Provenance", "", "Runs per commit (the code each run imported):", ""]
    out += [f"- `{commit}`: {', '.join(names)}" for commit, names in commits.items()]
    out.append("")
    if results.get("mixed_runs"):
        out += ["**Runs of one method differ in configuration or engines** (reported together "
                "only because `--allow-mixed-runs` was given):", ""]
        out += [f"- {line}" for line in results["mixed_runs"]] + [""]
    if runs:
        out += ["Per run: the engines its refreshes ran, the 1-minute load average when it "
                "started, and the share of the machine's CPU time other processes took "
                "during the fit (its fit time is a cost measurement only when that is near 0).",
                ""]
        rows = []
        for r in runs:
            prov = r["provenance"]
            engines = "; ".join(f"{k} {', '.join(v)}" for k, v in prov["engines"].items())
            load = prov.get("load_average_start")
            rows.append([r["method"], r["seed"], (prov.get("git_commit") or "n/a")[:10]
                         + (" (dirty)" if prov.get("git_dirty") else ""),
                         engines or "–", _fmt(load[0] if load else None, 2),
                         _fmt(prov.get("other_cpu_share"), 2), _fmt(r["fit_s"], 0)])
        out += _table(["method", "seed", "commit", "engines", "load at start",
                       "others' CPU share", "fit s"], rows)
    return out


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
        f"# LCC benchmark: {cfg['dataset']}, {cfg['backbone']} @ {cfg['image_size']} px, "
        f"fine-tuning `{cfg['finetune']}`",
        "",
        f"Question: does Latent Cluster Correction improve fine-tuning over plain cross-entropy "
        f"with everything else equal (seeds {seeds}, {cfg['epochs']} epochs, "
        f"{_optimizer(cfg)} lr {cfg['lr']:g}, weight decay {cfg['weight_decay']:g}, cosine "
        f"schedule, batch {cfg['batch_size']})?",
        "",
        f"- Data: {data['n_train']} training / {data['n_test']} test images, "
        f"{data['n_classes']} classes; network input {data['input_shape']}. "
        "Hyper-parameters are never chosen on the test set.",
        f"- Machine: {machine['device_name']}; {machine['cpus_usable']} usable of "
        f"{machine['cpu_count']} CPUs (load average at start {machine['load_average']}); "
        f"torch {machine['torch']}, torch threads: {machine['torch_threads']}; "
        f"{machine['platform']}; report written at commit {machine['git_commit']}"
        f"{' with uncommitted changes' if machine.get('git_dirty') else ''} (each run's own "
        "commit: \"Provenance\" below).",
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
        "t-test (`scipy.stats.ttest_rel`); Wilcoxon p: two-sided signed-rank test "
        "(`scipy.stats.wilcoxon`; with n pairs it cannot fall below 2 / 2^n); n/a with one "
        "seed or identical differences.",
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
                _fmt_p(s["p_value"]), _fmt_p(s.get("wilcoxon_p")),
                f"{wins}/{s['n'] - wins - losses}/{losses}",
                ", ".join(_fmt(d, 2, 100) for d in s["diffs"]),
            ])
    out += _table(["comparison", "metric", "n", "mean diff", "95% CI", "p", "Wilcoxon p",
                   "win/tie/loss", "per-seed diffs"], rows)
    out += _additivity(results)
    if results.get("verdict"):
        v = results["verdict"]
        out += [f"**Pre-registered verdict** (lcc vs ce, top-1, smallest gain worth the cost "
                f"{v['min_effect_points']:g} points; rule in docs/benchmarks.md): "
                f"**{v['verdict']}**.", ""]

    out += _grid_table(results)

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
    quiet = {m: q for m, q in cost.get("quiet", {}).items() if q["n_pairs"]}
    if quiet:
        share = next(iter(quiet.values()))["max_other_share"]
        out += [f"Time ratio on a quiet machine: only the seeds whose two runs both had other "
                f"processes take under {share:.0%} of the CPU during the fit (the cost figure "
                "of record; the table above includes fits slowed by other jobs).", ""]
        out += _table(["method", "quiet pairs", "seeds", "time ratio to ce", "per seed"],
                      [[m, q["n_pairs"], ", ".join(map(str, q["seeds"])), _fmt(q["ratio"], 2),
                        ", ".join(_fmt(r, 2) for r in q["ratios"])] for m, q in quiet.items()])
    if results.get("prepare_s") is not None:
        out += [f"Data preparation (loading, embedding or cache read): "
                f"{_fmt(results['prepare_s'], 1)} s.", ""]

    if results["refresh_timings"]:
        out += ["## Refresh time split (median over refreshes of all seeds, seconds)", ""]
        rows = []
        for m, t in results["refresh_timings"].items():
            rows.append([m, t["n_refreshes"],
                         *(_fmt(t.get(history_key(k)), 3) for k in TIMING_KEYS)])
        # refresh_s is the whole refresh, the others its steps.
        names = [k.removesuffix("_s").replace("refresh", "total") for k in TIMING_KEYS]
        out += _table(["method", "refreshes", *names], rows)

        out += [
            "## Clustering at each refresh (mean over seeds)",
            "",
            "Misclustered: fraction of training samples in a cluster owned by another class "
            "(these get the LCC pull). Uncovered: classes owning no cluster. Largest: share of "
            "samples in the largest cluster. No target: fraction of samples misclustered in a "
            "class without a representative. Representatives: target candidates kept.",
            "",
        ]
        for m, per_epoch in results["refresh_stats"].items():
            out += [f"### {m}", ""]
            keys = [k for k in STAT_KEYS if history_key(k) in per_epoch[0]]
            rows = [[e["epoch"], *(_fmt(e[history_key(k)], STAT_LABELS[k][1]) for k in keys)]
                    for e in per_epoch]
            out += _table(["epoch", *(STAT_LABELS[k][0] for k in keys)], rows)

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

    out += _provenance(results)
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
                             path: Path, keys: Sequence[str] = STAT_KEYS) -> None:
    """Plot clustering diagnostics per refresh epoch, one panel per key.

    Parameters
    ----------
    refresh_stats : mapping of str to sequence of mapping
        Per method, one row per refresh epoch with ``epoch`` and the history keys
        (``lcc_<key>``) of ``keys``.
    path : Path
        PNG file to write.
    keys : sequence of str, default=sklcc.diagnostics.STAT_KEYS
        Diagnostics to draw, without the ``lcc_`` prefix.

    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    n_cols = min(len(keys), 4)
    n_rows = math.ceil(len(keys) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.6 * n_rows),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for m, rows in refresh_stats.items():
            ax.plot([r["epoch"] for r in rows], [r.get(history_key(key)) for r in rows],
                    marker="o", label=m)
        ax.set_xlabel("epoch of refresh")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(STAT_LABELS.get(key, (key,))[0])
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    axes[0][0].legend()
    fig.suptitle("LCC clustering at each refresh (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
