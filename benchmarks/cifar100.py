"""Benchmark: does LCC improve fine-tuning, by how much, how reliably, at what cost.

Trains the same network on the same data with several losses, for several seeds, and
reports test accuracy (top-1, top-5), paired differences against plain cross-entropy
with t confidence intervals and p-values, fit time, peak memory, the LCC refresh cost
split and the clustering diagnostics at each refresh. Methods (``--methods``):

- ``ce``: :class:`sklcc.LatentPenaltyClassifier` alone, cross-entropy only (the baseline);
- ``lcc``: :class:`sklcc.LCCClassifier`, cross-entropy + LCC on the head's hidden layer;
- ``center``: :class:`sklcc.CenterLossClassifier`, cross-entropy + center loss (Wen et
  al. 2016) on the same layer;
- ``lcc-tuned`` / ``ce-tuned``: the same, with hyper-parameters chosen by
  :class:`sklcc.tuning.LCCSearchCV` on a validation split carved from the training data
  (never the test set), the same number of trials for both;
- ``ce+ls`` / ``lcc+ls``: ``ce`` and ``lcc`` with label-smoothed cross-entropy
  (``--label-smoothing``, 0.1), the control arm of the pre-registered confirmation;
- ``lcc@louvain_resolution=R`` (``--louvain-resolution-sweep R ...``): ``lcc`` with
  Louvain resolution ``R``;
- ``lcc@w=W,k=K,layer=L`` (``--grid-weights``, ``--grid-k``, ``--grid-layers``): one
  cell of the published grid (weight, one k for graph and target, placement ``logits``
  or ``last-stage``).

Every finished run is written to ``<out>/runs/`` at once, with its provenance (commit,
clean tree or not, library versions, the kNN and Louvain engines that ran, the machine's
load); the same command resumes a killed benchmark where it stopped. The report refuses
to pool runs of one method whose configuration or engines differ
(``--allow-mixed-runs`` reports them with the list of differences).

Within a seed every method starts from the same initial weights and sees the same
batches (every estimator is seeded with ``random_state=seed``), so ``ce`` and ``lcc``
differ only by the LCC term. The pieces live in the ``lccbench`` package beside this
script: ``config`` (this command line), ``data``, ``models``, ``methods``, ``measure``,
``stats`` and ``report``.

Examples
--------
Quick check of the whole path (about a minute on 2 CPU cores)::

    python benchmarks/cifar100.py --dataset digits --quick --out /tmp/bench

Frozen-backbone benchmark on CIFAR-10::

    nice -n 10 python benchmarks/cifar100.py --dataset cifar10 --finetune head \
        --image-size 128 --out bench-out/cifar10-head

The published recipe and grid (CIFAR-100, full fine-tuning at 224 px, 50 epochs, SGD,
w x k x placement = 12 LCC cells against CE, seeds 0-2; for a GPU)::

    python benchmarks/cifar100.py --preset published --device cuda --out bench-out/published

"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lccbench.config import parse_args, resolve_config
from lccbench.data import prepare_data, stratified_subset
from lccbench.measure import PeakMemory, machine_info
from lccbench.methods import make_estimator, tune
from lccbench.models import EpochProgress, TestAccuracy
from lccbench.provenance import CpuShare, check_poolable, commits_of, run_provenance
from lccbench.report import (
    jsonable,
    plot_accuracy_curves,
    plot_refresh_diagnostics,
    render_markdown,
)
from lccbench.stats import summarize, topk_accuracy, verdict
from sklcc import CenterLossClassifier, LCCClassifier
from sklcc.diagnostics import REFRESH_KEYS, history_key, term_key

#: Per-epoch history kept for each run: the losses, each penalty's term, the curves.
EPOCH_KEYS = ("epoch", "train_loss", "dur", "test_acc", "test_eval_s",
              *(term_key(cls.penalty_name) for cls in (LCCClassifier, CenterLossClassifier)))


def fit_one(method: str, seed: int, cfg: dict[str, Any], data: dict[str, Any],
            params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one method with one seed and measure it.

    Parameters
    ----------
    method : str
        Method name.
    seed : int
        Seed.
    cfg : dict
        Configuration.
    data : dict
        From :func:`lccbench.data.prepare_data`.
    params : dict, optional
        Tuned parameters.

    Returns
    -------
    dict
        Test top-1 / top-5, fit time (without the per-epoch test evaluation), peak
        memory, the per-epoch history, one row per LCC refresh and the run's
        provenance (:func:`lccbench.provenance.run_provenance`).

    """
    callbacks = [("test_acc", TestAccuracy(data["X_test"], data["y_test"])),
                 ("progress", EpochProgress(desc=f"{method} seed {seed}"))]
    net = make_estimator(method, cfg, data, seed, params=params, extra_callbacks=callbacks)
    with CpuShare() as cpu, PeakMemory(cfg["device"]) as memory:
        start = time.perf_counter()
        net.fit(data["X_train"], data["y_train"])
        fit_total = time.perf_counter() - start
    proba = net.predict_proba(data["X_test"])
    history = net.history
    eval_s = float(sum(history[:, "test_eval_s"]))
    per_epoch = {k: [row.get(k) for row in history] for k in EPOCH_KEYS if k in history[-1]}
    refresh_keys = [history_key(k) for k in REFRESH_KEYS]
    refreshes = [
        {"epoch": row["epoch"], **{k: row[k] for k in refresh_keys if k in row}}
        for row in history if history_key("refresh_s") in row
    ]
    fit_s = fit_total - eval_s
    return {
        "method": method, "seed": seed, "params": params or {},
        "top1": topk_accuracy(proba, data["y_test"], 1),
        "top5": topk_accuracy(proba, data["y_test"], 5),
        "fit_s": fit_s, "fit_total_s": fit_total, "test_eval_s": eval_s,
        "epoch_s": fit_s / len(history),
        "memory_method": memory.method, "rss_start_mb": memory.start_rss_mb,
        "peak_rss_mb": memory.peak_rss_mb,
        "rss_increase_mb": memory.peak_rss_mb - memory.start_rss_mb,
        "cuda_peak_mb": memory.cuda_peak_mb,
        "history": per_epoch, "refreshes": refreshes,
        "provenance": run_provenance(net, refreshes, cpu),
    }


def warm_up(cfg: dict[str, Any], data: dict[str, Any]) -> None:
    """Run one short, unrecorded fit of ``ce`` and ``lcc`` before anything is timed.

    The first fit of a process pays one-off costs (imports, thread pools, allocator
    growth, cuDNN's per-shape set-up) that would otherwise be charged to whichever
    method runs first.

    Parameters
    ----------
    cfg : dict
        Configuration.
    data : dict
        From :func:`lccbench.data.prepare_data`.

    """
    n_train, batch = len(data["y_train"]), cfg["batch_size"]
    # Two full batches and one of the size of the real last batch: a GPU meets every
    # batch shape of the timed fits (cuDNN picks its algorithms per shape).
    size = min(n_train, 2 * batch + n_train % batch)
    idx = stratified_subset(data["y_train"], size)
    n = len(idx)
    small = {**data, "X_train": data["X_train"][idx], "y_train": data["y_train"][idx]}
    for method in ("ce", "lcc"):
        params = {"max_epochs": 1}
        if method == "lcc":
            params.update(lcc_warmup=0, n_neighbors=min(cfg["n_neighbors"], n - 1))
        make_estimator(method, cfg, small, seed=0, params=params).fit(
            small["X_train"], small["y_train"])


def _schedule(cfg: dict[str, Any]) -> list[tuple[int, str]]:
    """(seed, method) in run order.

    Methods alternate within a seed, and which goes first rotates, so that drifts in the
    machine's load and caches hit every method alike.
    """
    order = []
    for i, seed in enumerate(cfg["seeds"]):
        shift = i % len(cfg["methods"])
        order += [(seed, m) for m in cfg["methods"][shift:] + cfg["methods"][:shift]]
    return order


class RunStore:
    """Finished runs on disk, one JSON file each, so a long benchmark resumes run by run.

    ``<out>/runs/<method>__seed<seed>.json`` is written as soon as a run ends; a restart
    with the same ``--out`` skips it. The recipe is kept in ``<out>/runs/recipe.json``:
    resuming with another recipe (anything but the choice of methods and seeds) is refused, so
    runs of different recipes never meet in one table.
    """

    # Options that only choose which runs to do (or how to print them), not how a run goes.
    _FREE = ("methods", "seeds", "command", "out", "threads", "preset", "grid_weights",
             "grid_k", "grid_layers", "louvain_resolution_sweep", "allow_mixed_runs",
             "min_effect")
    # Options added after stores were written, with the value they implicitly had.
    _ADDED = {"label_smoothing": 0.1, "louvain_backend": None}

    def __init__(self, out: Path, cfg: dict[str, Any]):
        self.folder = out / "runs"
        self.folder.mkdir(parents=True, exist_ok=True)
        recipe = jsonable({k: v for k, v in cfg.items() if k not in self._FREE})
        path = self.folder / "recipe.json"
        if path.is_file():
            old = json.loads(path.read_text())
            old = {**{k: v for k, v in self._ADDED.items() if k in recipe}, **old}
            changed = sorted(k for k in set(old) | set(recipe) if old.get(k) != recipe.get(k))
            if changed:
                raise SystemExit(
                    f"{out} holds runs of another recipe (differs in {changed}); pass a new "
                    "--out, or the same options to resume."
                )
        else:
            path.write_text(json.dumps(recipe, indent=1))

    def _path(self, method: str, seed: int) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_.=,+" else "_" for c in method)
        return self.folder / f"{safe}__seed{seed}.json"

    def has(self, method: str, seed: int) -> bool:
        """Whether the run is already on disk."""
        return self._path(method, seed).is_file()

    def load(self, method: str, seed: int) -> dict[str, Any]:
        """Read a finished run."""
        return json.loads(self._path(method, seed).read_text())

    def save(self, run: dict[str, Any]) -> None:
        """Write a finished run (atomically: a killed write leaves no half file)."""
        path = self._path(run["method"], run["seed"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(jsonable(run), allow_nan=False))
        tmp.replace(path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``results.json``, ``results.md`` and the plots.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments; default ``sys.argv[1:]``.

    Returns
    -------
    dict
        The results, as written to ``results.json``.

    """
    args = parse_args(argv, description=__doc__.split("\n\n")[0])
    cfg = resolve_config(args, argv, script=__file__)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info(cfg["device"])
    tqdm.write(f"[bench] {cfg['dataset']} / {cfg['backbone']} @ {cfg['image_size']} px / "
               f"{cfg['finetune']}; methods {cfg['methods']}; seeds {cfg['seeds']}; "
               f"{cfg['epochs']} epochs; {machine['device_name']}")

    data = prepare_data(cfg)
    info = data["info"]
    tqdm.write(f"[data] {info['n_train']} train / {info['n_test']} test, {info['n_classes']} "
               f"classes, input {info['input_shape']} ({data['prepare_s']:.1f} s)")

    tuning, tuned_params = None, {}
    if any(m.endswith("-tuned") for m in cfg["methods"]):
        tuning = tune(cfg, data)
        if "skipped" in tuning:
            tqdm.write(f"[tune] skipped: {tuning['skipped']}")
            cfg["methods"] = [m for m in cfg["methods"] if not m.endswith("-tuned")]
        tuned_params = {m: t["best_params"] for m, t in tuning.get("methods", {}).items()}

    store = RunStore(out, cfg)
    todo = [(seed, method) for seed, method in _schedule(cfg) if not store.has(method, seed)]
    if todo:
        warm_up(cfg, data)
    runs = [store.load(method, seed) for seed, method in _schedule(cfg)
            if store.has(method, seed)]
    if runs:
        tqdm.write(f"[bench] resuming: {len(runs)} finished runs read from {store.folder}")
    with tqdm(total=len(todo), desc="fits", unit="fit") as bar:
        for seed, method in todo:
            bar.set_postfix_str(f"{method} seed {seed}")
            run = fit_one(method, seed, cfg, data, tuned_params.get(method))
            store.save(run)
            runs.append(run)
            tqdm.write(f"[fit] {method:>12} seed {seed}: top-1 {run['top1']:.4f} top-5 "
                       f"{run['top5']:.4f}  fit {run['fit_s']:.1f} s "
                       f"({run['epoch_s']:.2f} s/epoch)  peak RSS {run['peak_rss_mb']:.0f} MB")
            bar.update(1)

    try:
        mixed = check_poolable(runs, allow_mixed=cfg["allow_mixed_runs"])
    except ValueError as err:
        raise SystemExit(f"{err}") from err
    confidence = 0.95
    results = {"config": cfg, "machine": machine, "data": info, "methods": cfg["methods"],
               "prepare_s": data["prepare_s"], "confidence": confidence, "runs": runs,
               **summarize(runs, cfg["methods"], confidence), "tuning": tuning,
               "commits": commits_of(runs), "mixed_runs": mixed,
               "plots": ["accuracy_per_epoch.png"]}
    primary = next((p for p in results["paired"]
                    if (p["method"], p["baseline"]) == ("lcc", "ce")), None)
    if cfg["min_effect"] is not None and primary is not None:
        results["verdict"] = {"min_effect_points": cfg["min_effect"],
                              "verdict": verdict(primary["top1"], cfg["min_effect"] / 100)}
    plot_accuracy_curves(runs, cfg["methods"], out / "accuracy_per_epoch.png")
    if results["refresh_stats"]:
        plot_refresh_diagnostics(results["refresh_stats"], out / "misclustered_per_refresh.png",
                                 keys=("misclustered",))
        plot_refresh_diagnostics(results["refresh_stats"], out / "cluster_diagnostics.png")
        results["plots"] += ["misclustered_per_refresh.png", "cluster_diagnostics.png"]
    results = jsonable(results)
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False))
    markdown = render_markdown(results)
    (out / "results.md").write_text(markdown)
    tqdm.write(markdown.split("## Plots")[0])
    tqdm.write(f"[bench] wrote {out / 'results.json'}, {out / 'results.md'} and "
               f"{', '.join(results['plots'])}")
    return results


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main()
