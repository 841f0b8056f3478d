"""Benchmark: does LCC improve fine-tuning, by how much, how reliably, at what cost.

Trains the same network on the same data with several losses, for several seeds, and
reports test accuracy (top-1, top-5), paired differences against plain cross-entropy
with t confidence intervals and p-values, fit time, peak memory, the LCC refresh cost
split and the clustering diagnostics at each refresh. Methods (``--methods``):

- ``ce``: skorch ``NeuralNetClassifier``, cross-entropy only (the baseline);
- ``lcc``: :class:`sklcc.LCCClassifier`, cross-entropy + LCC on the head's hidden layer;
- ``center``: cross-entropy + center loss (Wen et al. 2016) on the same layer;
- ``lcc-tuned`` / ``ce-tuned``: the same, with hyper-parameters chosen by
  :class:`sklcc.tuning.LCCSearchCV` on a validation split carved from the training data
  (never the test set), the same number of trials for both;
- ``lcc@res=R`` (``--resolution-sweep R ...``): ``lcc`` with Louvain resolution ``R``.

Within a seed every method starts from the same initial weights and sees the same
batches (torch seeded inside ``fork_rng``, as ``LCCClassifier(random_state=seed)``
does), so ``ce`` and ``lcc`` differ only by the LCC term.

Examples
--------
Quick check of the whole path (about a minute on 2 CPU cores)::

    python benchmarks/cifar100.py --dataset digits --quick --out /tmp/bench

Frozen-backbone benchmark on CIFAR-10::

    nice -n 10 python benchmarks/cifar100.py --dataset cifar10 --finetune head \
        --out bench-out/cifar10-head

"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _models import (
    HIDDEN_LAYER,
    CenterLossClassifier,
    EpochProgress,
    FineTuneNet,
    SeededNeuralNetClassifier,
    TestAccuracy,
    parse_finetune,
)
from _report import (
    REFRESH_STATS,
    REFRESH_TIMINGS,
    machine_info,
    mean_std,
    median_timings,
    paired_summary,
    plot_accuracy_curves,
    plot_refresh_diagnostics,
    render_markdown,
    topk_accuracy,
)
from sklearn.model_selection import train_test_split
from skorch.callbacks import LRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR
from tqdm.auto import tqdm

from sklcc import LCCClassifier
from sklcc.images.datasets import default_cache_dir, load_dataset
from sklcc.images.embedding import ImageEmbedder

BASE_METHODS = ("ce", "lcc", "center", "lcc-tuned", "ce-tuned")
DEFAULT_METHODS = ("ce", "lcc", "center", "lcc-tuned")
#: Settings ``--quick`` uses unless given on the command line.
QUICK = {"epochs": 3, "seeds": [0, 1], "lcc_warmup": 1, "lcc_interval": 1, "tune_trials": 2,
         "train_subset": 2000, "test_subset": 1000, "threads": 1}
#: Seed of the train/test subsets and of the tuning split: fixed, so every seed and
#: method sees the same data.
DATA_SEED = 0


# --------------------------------------------------------------------------- CLI


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show a default only where it is a value (None means 'see the help text')."""

    def _get_help_string(self, action):
        if action.default in (None, False, []):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    argparse.Namespace
        Options; those left as None are filled in by :func:`resolve_config`.

    """
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=_HelpFormatter,
    )
    g = p.add_argument_group("data and network")
    g.add_argument("--dataset", default="cifar100",
                   help="cifar100, cifar10, digits or imagefolder:PATH")
    g.add_argument("--data-dir", default=None,
                   help="where the dataset files are (default: the loader's own search)")
    g.add_argument("--cache-dir", default=None,
                   help="embedding cache (default: sklcc.images.datasets.default_cache_dir())")
    g.add_argument("--backbone", default="efficientnet_lite0",
                   help="efficientnet_lite0 (offline weights) or torchvision:<name>")
    g.add_argument("--random-weights", action="store_true",
                   help="random backbone weights instead of pretrained ones (smoke tests)")
    g.add_argument("--resolution", type=int, default=None,
                   help="image side in pixels (default 128; 32 for digits)")
    g.add_argument("--finetune", default="head",
                   help="head (frozen backbone, cached embeddings), last-blocks:N (cached "
                        "activations entering the last N blocks; those blocks train) or full")
    g.add_argument("--hidden", type=int, default=512, help="width of the head's hidden layer")
    g.add_argument("--dropout", type=float, default=0.5, help="dropout after the hidden layer")
    g.add_argument("--train-subset", type=int, default=None,
                   help="use a stratified subset of this many training images")
    g.add_argument("--test-subset", type=int, default=None,
                   help="use a stratified subset of this many test images")
    g.add_argument("--device", default="cpu", help="cpu or cuda")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 with --quick). On a "
                        "busy shared machine 1 thread can be several times faster than 2")

    g = p.add_argument_group("training (identical for every method)")
    g.add_argument("--epochs", type=int, default=None, help="epochs (default 30)")
    g.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    g.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay")
    g.add_argument("--batch-size", type=int, default=256, help="training batch size")
    g.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 3 4")
    g.add_argument("--methods", nargs="+", default=None,
                   help=f"any of {', '.join(BASE_METHODS)} (default: "
                        f"{' '.join(DEFAULT_METHODS)}); ce is always run, lcc-tuned brings "
                        "ce-tuned")

    g = p.add_argument_group("LCC")
    g.add_argument("--lcc-weight", type=float, default=0.03)
    g.add_argument("--lcc-warmup", type=int, default=None, help="default 10")
    g.add_argument("--lcc-interval", type=int, default=None, help="default 1")
    g.add_argument("--resolution-louvain", type=float, default=1.0,
                   help="Louvain resolution of the lcc method")
    g.add_argument("--resolution-sweep", type=float, nargs="*", default=[],
                   help="also run lcc@res=R for each R")
    g.add_argument("--n-neighbors", type=int, default=10)
    g.add_argument("--n-representatives", type=int, default=32)
    g.add_argument("--cluster-sample-size", type=int, default=5000,
                   help="samples the graph and Louvain see (default: 5000, the estimator's)")
    g.add_argument("--cluster-n-components", type=int, default=64,
                   help="PCA components the clustering works in (default: 64, the "
                        "estimator's; 0 for none)")

    g = p.add_argument_group("center loss")
    g.add_argument("--center-weight", type=float, default=0.003)
    g.add_argument("--center-lr", type=float, default=0.01,
                   help="learning rate of the centers' parameter group")

    g = p.add_argument_group("tuning (lcc-tuned, ce-tuned)")
    g.add_argument("--tune-trials", type=int, default=None,
                   help="Optuna trials per tuned method (default 10)")
    g.add_argument("--tune-valid-fraction", type=float, default=0.2,
                   help="fraction of the training data held out to score trials")

    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, help="folder for results.json, results.md, PNGs")
    g.add_argument("--quick", action="store_true",
                   help=f"a fast pass through everything: {QUICK} unless given")
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    """Fill in defaults (and ``--quick`` settings) and check the options.

    Parameters
    ----------
    args : argparse.Namespace
        From :func:`parse_args`.
    argv : list of str, optional
        The arguments parsed, recorded as the command; default ``sys.argv[1:]``.

    Returns
    -------
    dict
        The full configuration, as recorded in ``results.json``.

    """
    cfg = dict(vars(args))
    defaults = {"epochs": 30, "seeds": [0, 1, 2, 3, 4], "lcc_warmup": 10, "lcc_interval": 1,
                "tune_trials": 10, "train_subset": None, "test_subset": None, "threads": None}
    for key, default in defaults.items():
        if cfg[key] is None:
            cfg[key] = QUICK[key] if args.quick else default
    if cfg["resolution"] is None:
        cfg["resolution"] = 32 if cfg["dataset"] == "digits" else 128
    cfg["cluster_n_components"] = cfg["cluster_n_components"] or None  # 0: no projection
    try:
        parse_finetune(cfg["finetune"])
    except ValueError as err:
        raise SystemExit(f"--finetune: {err}") from err
    if any(r <= 0 for r in cfg["resolution_sweep"]):
        raise SystemExit(f"--resolution-sweep {cfg['resolution_sweep']}: every Louvain "
                         "resolution must be > 0 (1 is standard Louvain).")
    cfg["seeds"] = list(dict.fromkeys(cfg["seeds"]))

    methods = list(dict.fromkeys(cfg["methods"] or DEFAULT_METHODS))
    unknown = [m for m in methods if m not in BASE_METHODS]
    if unknown:
        raise SystemExit(f"--methods {unknown} unknown; choose from {list(BASE_METHODS)}.")
    if "ce" not in methods:
        methods.insert(0, "ce")  # every paired difference is taken against it
    if "lcc-tuned" in methods and "ce-tuned" not in methods:
        methods.append("ce-tuned")  # CE gets the same tuning budget
    methods += [f"lcc@res={r:g}" for r in cfg["resolution_sweep"]]
    cfg["methods"] = methods
    if cfg["lcc_warmup"] >= cfg["epochs"] and any(m.startswith("lcc") for m in methods):
        raise SystemExit(
            f"--lcc-warmup {cfg['lcc_warmup']} >= --epochs {cfg['epochs']}: LCC would never "
            "refresh and train exactly like ce; lower the warm-up or raise the epochs."
        )
    argv = sys.argv[1:] if argv is None else argv
    cfg["command"] = " ".join(shlex.quote(a) for a in [sys.executable, __file__, *argv])
    return cfg


# --------------------------------------------------------------------------- data


def _stratified_subset(labels: np.ndarray, size: int | None) -> np.ndarray:
    """Return the indices of a seeded stratified subset of ``size`` samples (all when None)."""
    index = np.arange(len(labels))
    if size is None or size >= len(labels):
        return index
    subset, _ = train_test_split(index, train_size=size, stratify=labels,
                                 random_state=DATA_SEED)
    return np.sort(subset)


def prepare_data(cfg: dict[str, Any]) -> dict[str, Any]:
    """Load the images and turn them into the network's input rows.

    ``head``: pooled embeddings through :class:`ImageEmbedder`'s on-disk cache (of the
    whole split when a cache file of it exists, else of the subset only).
    ``last-blocks:N``: the activations entering the last N blocks, cached the same way.
    ``full``: the images themselves, as float32 ``(N, H, W, 3)``.

    Parameters
    ----------
    cfg : dict
        From :func:`resolve_config`.

    Returns
    -------
    dict
        ``X_train``, ``y_train``, ``X_test``, ``y_test`` (float32 inputs, int64 codes),
        ``n_classes``, ``in_features`` and an ``info`` dict for the report.

    """
    start = time.perf_counter()
    train, test = load_dataset(cfg["dataset"], data_dir=cfg["data_dir"])
    train_idx = _stratified_subset(train.labels, cfg["train_subset"])
    test_idx = _stratified_subset(test.labels, cfg["test_subset"])
    regime, n_blocks = parse_finetune(cfg["finetune"])
    info = {"dataset": cfg["dataset"], "classes": train.classes,
            "n_train_total": len(train), "n_test_total": len(test)}
    if regime == "full":
        X_train = train.images[train_idx].astype(np.float32)
        X_test = test.images[test_idx].astype(np.float32)
        in_features = 0
    else:
        cache_dir = cfg["cache_dir"] or default_cache_dir()
        embedder = ImageEmbedder(
            cfg["backbone"], resolution=cfg["resolution"],
            output="pooled" if regime == "head" else f"blocks:{n_blocks}",
            device=cfg["device"], cache_dir=cache_dir, progress=True,
            pretrained=not cfg["random_weights"],
        ).fit(train.images[:1])
        parts, files = [], []
        for name, images, idx in (("train", train.images, train_idx),
                                  ("test", test.images, test_idx)):
            whole = embedder.cache_file(images)
            if len(idx) < len(images) and not whole.is_file():
                images, idx = images[idx], np.arange(len(idx))
            path = embedder.cache_file(images)
            hit = path.is_file()
            tqdm.write(f"[data] {name}: {len(images)} images -> {embedder.output} "
                       f"{'read from cache' if hit else 'computing, caching to'} {path}")
            parts.append(embedder.transform(images)[idx])
            files.append({"split": name, "file": str(path), "cache_hit": hit})
        X_train, X_test = parts
        in_features = X_train.shape[1]
        info["cache_files"] = files
    info.update(n_train=len(train_idx), n_test=len(test_idx), n_classes=len(train.classes),
                input_shape=list(X_train.shape[1:]))
    return {
        "X_train": np.ascontiguousarray(X_train), "y_train": train.labels[train_idx],
        "X_test": np.ascontiguousarray(X_test), "y_test": test.labels[test_idx],
        "n_classes": len(train.classes), "in_features": in_features, "info": info,
        "prepare_s": time.perf_counter() - start,
    }


# --------------------------------------------------------------------------- estimators


def make_estimator(method: str, cfg: dict[str, Any], data: dict[str, Any], seed: int,
                   params: dict[str, Any] | None = None, callbacks: list | None = None):
    """Build the unfitted estimator of one method.

    Every method shares the module, optimizer (AdamW), cosine schedule, batch size,
    epochs and seed; only the loss differs.

    Parameters
    ----------
    method : str
        ``ce``, ``lcc``, ``center``, ``ce-tuned``, ``lcc-tuned`` or ``lcc@res=R``.
    cfg : dict
        Configuration.
    data : dict
        From :func:`prepare_data`.
    seed : int
        Torch seed of the fit (and of LCC's clustering).
    params : dict, optional
        Extra ``set_params`` values (the tuned parameters).
    callbacks : list, optional
        Extra ``(name, callback)`` pairs, run after the learning-rate scheduler.

    Returns
    -------
    skorch NeuralNetClassifier

    """
    common = dict(
        module=FineTuneNet,
        module__n_classes=data["n_classes"], module__in_features=data["in_features"],
        module__hidden=cfg["hidden"], module__dropout=cfg["dropout"],
        module__finetune=cfg["finetune"], module__backbone=cfg["backbone"],
        module__resolution=cfg["resolution"], module__pretrained=not cfg["random_weights"],
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.AdamW, lr=cfg["lr"], optimizer__weight_decay=cfg["weight_decay"],
        batch_size=cfg["batch_size"], max_epochs=cfg["epochs"],
        iterator_train__shuffle=True, train_split=None, device=cfg["device"], verbose=0,
        callbacks=[("lr_scheduler", LRScheduler(policy=CosineAnnealingLR, T_max=cfg["epochs"]))]
        + list(callbacks or []),
        random_state=seed,
    )
    base = method.split("@")[0].removesuffix("-tuned")
    if base == "ce":
        net = SeededNeuralNetClassifier(**common)
    elif base == "center":
        net = CenterLossClassifier(n_classes=data["n_classes"], center_dim=cfg["hidden"],
                                   center_layer=HIDDEN_LAYER, center_weight=cfg["center_weight"],
                                   center_lr=cfg["center_lr"], **common)
    elif base == "lcc":
        resolution = cfg["resolution_louvain"]
        if method.startswith("lcc@res="):
            resolution = float(method.split("=", 1)[1])
        net = LCCClassifier(
            lcc_layers=[HIDDEN_LAYER], lcc_weight=cfg["lcc_weight"],
            n_neighbors=cfg["n_neighbors"], louvain_resolution=resolution,
            n_representatives=cfg["n_representatives"], lcc_warmup=cfg["lcc_warmup"],
            lcc_interval=cfg["lcc_interval"], cluster_sample_size=cfg["cluster_sample_size"],
            cluster_n_components=cfg["cluster_n_components"],
            **common,
        )
    else:
        raise ValueError(f"unknown method {method!r}; expected one of {BASE_METHODS}.")
    return net.set_params(**(params or {}))


def tune(cfg: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Choose the parameters of ``ce-tuned`` and ``lcc-tuned`` on a validation split.

    Both searches get ``tune_trials`` Optuna trials and the same split: a stratified
    ``tune_valid_fraction`` of the training data, seeded with :data:`DATA_SEED`. CE
    searches the learning rate and weight decay; LCC the same plus ``lcc_weight`` and
    ``louvain_resolution``. The test set is never used.

    Parameters
    ----------
    cfg : dict
        Configuration.
    data : dict
        From :func:`prepare_data`.

    Returns
    -------
    dict
        ``{"skipped": reason}`` when :mod:`sklcc.tuning` cannot be imported, else the
        split, the trial count and, per method, ``best_params``, ``best_valid_score``,
        ``search_s`` and every trial.

    """
    try:
        from optuna.distributions import FloatDistribution

        from sklcc.tuning import LCCSearchCV
    except ImportError as err:
        return {"skipped": f"sklcc.tuning is not importable ({err}); lcc-tuned and ce-tuned "
                           "were not run."}
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    y = data["y_train"]
    train_idx, valid_idx = train_test_split(
        np.arange(len(y)), test_size=cfg["tune_valid_fraction"], stratify=y,
        random_state=DATA_SEED,
    )
    spaces = {
        "ce-tuned": {"lr": FloatDistribution(1e-4, 1e-2, log=True),
                     "optimizer__weight_decay": FloatDistribution(1e-4, 1e-1, log=True)},
    }
    spaces["lcc-tuned"] = {**spaces["ce-tuned"],
                           "lcc_weight": FloatDistribution(1e-3, 0.3, log=True),
                           "louvain_resolution": FloatDistribution(0.5, 16.0, log=True)}
    out = {"n_trials": cfg["tune_trials"], "valid_fraction": cfg["tune_valid_fraction"],
           "seed": DATA_SEED, "n_fit": len(train_idx), "n_valid": len(valid_idx), "methods": {}}
    for method in ("ce-tuned", "lcc-tuned"):
        if method not in cfg["methods"]:
            continue
        tqdm.write(f"[tune] {method}: {cfg['tune_trials']} trials on {len(train_idx)} / "
                   f"{len(valid_idx)} train / validation samples")
        search = LCCSearchCV(
            make_estimator(method, cfg, data, seed=DATA_SEED), spaces[method],
            n_trials=cfg["tune_trials"], cv=[(train_idx, valid_idx)], scoring="accuracy",
            refit=False, random_state=DATA_SEED, show_progress_bar=True,
        )
        start = time.perf_counter()
        search.fit(data["X_train"], y)
        res = search.cv_results_
        out["methods"][method] = {
            "best_params": search.best_params_, "best_valid_score": search.best_score_,
            "search_s": time.perf_counter() - start,
            "trials": [{"params": p, "valid_score": float(s)}
                       for p, s in zip(res["params"], res["mean_test_score"], strict=True)],
        }
    return out


# --------------------------------------------------------------------------- measuring


class PeakMemory:
    """Peak memory of the process during a block.

    On Linux the kernel's peak resident set size (``VmHWM`` in ``/proc/self/status``)
    is reset on entry by writing ``5`` to ``/proc/self/clear_refs``, so the value read
    on exit is the peak of this block. Elsewhere it falls back to
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the peak of the whole process so
    far. CUDA's allocator peak is reset and read as well on a GPU.

    Attributes
    ----------
    method : str
        How the peak was measured (``"VmHWM"`` or ``"ru_maxrss"``).
    start_rss_mb, peak_rss_mb : float
        Resident set size on entry, and peak during the block, in MiB.
    cuda_peak_mb : float or None
        ``torch.cuda.max_memory_allocated`` during the block, in MiB.

    """

    def __init__(self, device: str):
        self.device = device

    @staticmethod
    def _status_kb(key: str) -> float | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return float(line.split()[1])
        except OSError:
            return None
        return None

    def __enter__(self) -> PeakMemory:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM" if self._status_kb("VmHWM") is not None else "ru_maxrss"
        except OSError:
            self.method = "ru_maxrss"
        rss = self._status_kb("VmRSS")
        self.start_rss_mb = math.nan if rss is None else rss / 1024
        self.cuda = self.device.startswith("cuda") and torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc) -> None:
        if self.method == "VmHWM":
            self.peak_rss_mb = self._status_kb("VmHWM") / 1024
        else:  # kilobytes on Linux, bytes on macOS
            scale = 1024 * 1024 if sys.platform == "darwin" else 1024
            self.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
        self.cuda_peak_mb = (torch.cuda.max_memory_allocated() / 2**20) if self.cuda else None


MEMORY_NOTES = {
    "VmHWM": "peak resident set size of the whole process during each fit (VmHWM of "
             "/proc/self/status, reset before the fit through /proc/self/clear_refs); it "
             "includes the data and libraries already loaded, so the increase over the RSS "
             "at fit start is the fit's own share.",
    "ru_maxrss": "resource.getrusage(RUSAGE_SELF).ru_maxrss, the peak resident set size of "
                 "the process since it started (not per fit: later fits can only show "
                 "equal or higher values).",
}


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
        From :func:`prepare_data`.
    params : dict, optional
        Tuned parameters.

    Returns
    -------
    dict
        Test top-1 / top-5, fit time (without the per-epoch test evaluation), peak
        memory, the per-epoch history and one row per LCC refresh.

    """
    callbacks = [("test_acc", TestAccuracy(data["X_test"], data["y_test"])),
                 ("progress", EpochProgress(desc=f"{method} seed {seed}"))]
    net = make_estimator(method, cfg, data, seed, params=params, callbacks=callbacks)
    with PeakMemory(cfg["device"]) as memory:
        start = time.perf_counter()
        net.fit(data["X_train"], data["y_train"])
        fit_total = time.perf_counter() - start
    proba = net.predict_proba(data["X_test"])
    history = net.history
    eval_s = float(sum(history[:, "test_eval_s"]))
    keys = ("epoch", "train_loss", "dur", "test_acc", "test_eval_s", "train_lcc",
            "train_center")
    per_epoch = {k: [row.get(k) for row in history] for k in keys if k in history[-1]}
    refreshes = [
        {"epoch": row["epoch"], **{k: row[k] for k in REFRESH_STATS + REFRESH_TIMINGS
                                   if k in row}}
        for row in history if "lcc_refresh_s" in row
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
        From :func:`prepare_data`.

    """
    n_train, batch = len(data["y_train"]), cfg["batch_size"]
    # Two full batches and one of the size of the real last batch: a GPU meets every
    # batch shape of the timed fits (cuDNN picks its algorithms per shape).
    size = min(n_train, 2 * batch + n_train % batch)
    idx = _stratified_subset(data["y_train"], size)
    n = len(idx)
    small = {**data, "X_train": data["X_train"][idx], "y_train": data["y_train"][idx]}
    for method in ("ce", "lcc"):
        params = {"max_epochs": 1}
        if method == "lcc":
            params.update(lcc_warmup=0, n_neighbors=min(cfg["n_neighbors"], n - 1))
        make_estimator(method, cfg, small, seed=0, params=params).fit(
            small["X_train"], small["y_train"])


# --------------------------------------------------------------------------- summaries


def summarize(runs: list[dict[str, Any]], methods: list[str],
              confidence: float = 0.95) -> dict[str, Any]:
    """Per-method summaries, paired differences, cost and refresh diagnostics.

    Parameters
    ----------
    runs : list of dict
        From :func:`fit_one`.
    methods : list of str
        Methods in report order.
    confidence : float, default=0.95
        Level of the paired confidence intervals.

    Returns
    -------
    dict
        ``summary``, ``paired``, ``cost``, ``refresh_timings`` and ``refresh_stats``.

    """
    by = {m: {r["seed"]: r for r in runs if r["method"] == m} for m in methods}
    summary = {}
    for m in methods:
        seeds = sorted(by[m])
        t1 = mean_std([by[m][s]["top1"] for s in seeds])
        t5 = mean_std([by[m][s]["top5"] for s in seeds])
        summary[m] = {"n": len(seeds), "top1_mean": t1[0], "top1_std": t1[1],
                      "top5_mean": t5[0], "top5_std": t5[1]}

    pairs = [(m, "ce") for m in methods if m != "ce"]
    if "lcc-tuned" in methods and "ce-tuned" in methods:
        pairs.append(("lcc-tuned", "ce-tuned"))
    paired = []
    for m, base in pairs:
        seeds = sorted(set(by[m]) & set(by[base]))
        if not seeds:
            continue
        entry = {"method": m, "baseline": base, "seeds": seeds}
        for metric in ("top1", "top5"):
            entry[metric] = paired_summary([by[m][s][metric] for s in seeds],
                                           [by[base][s][metric] for s in seeds],
                                           confidence).to_dict()
        paired.append(entry)

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
    cost = {"methods": cost_methods, "memory_method": memory_method,
            "memory_note": MEMORY_NOTES[memory_method],
            "cuda": any(r["cuda_peak_mb"] is not None for r in runs)}

    refresh_timings, refresh_stats = {}, {}
    for m in methods:
        refreshes = [f for s in sorted(by[m]) for f in by[m][s]["refreshes"]]
        if not refreshes:
            continue
        refresh_timings[m] = {"n_refreshes": len(refreshes), **median_timings(refreshes)}
        epochs = sorted({f["epoch"] for f in refreshes})
        refresh_stats[m] = [
            {"epoch": e, **{k: float(np.mean([f[k] for f in refreshes if f["epoch"] == e]))
                            for k in REFRESH_STATS}}
            for e in epochs
        ]
    return {"summary": summary, "paired": paired, "cost": cost,
            "refresh_timings": refresh_timings, "refresh_stats": refresh_stats}


def _jsonable(obj: Any) -> Any:
    """Numpy scalars and arrays to Python, NaN and infinity to None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --------------------------------------------------------------------------- main


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
    args = parse_args(argv)
    cfg = resolve_config(args, argv)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info(cfg["device"])
    tqdm.write(f"[bench] {cfg['dataset']} / {cfg['backbone']} @ {cfg['resolution']} px / "
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

    warm_up(cfg, data)
    runs = []
    total = len(cfg["seeds"]) * len(cfg["methods"])
    with tqdm(total=total, desc="fits", unit="fit") as bar:
        # Alternate methods within a seed, and rotate which goes first, so that drifts in
        # the machine's load and caches hit every method alike.
        for i, seed in enumerate(cfg["seeds"]):
            shift = i % len(cfg["methods"])
            for method in cfg["methods"][shift:] + cfg["methods"][:shift]:
                bar.set_postfix_str(f"{method} seed {seed}")
                run = fit_one(method, seed, cfg, data, tuned_params.get(method))
                runs.append(run)
                tqdm.write(f"[fit] {method:>12} seed {seed}: top-1 {run['top1']:.4f} top-5 "
                           f"{run['top5']:.4f}  fit {run['fit_s']:.1f} s "
                           f"({run['epoch_s']:.2f} s/epoch)  peak RSS {run['peak_rss_mb']:.0f} MB")
                bar.update(1)

    confidence = 0.95
    results = {"config": cfg, "machine": machine, "data": info, "methods": cfg["methods"],
               "prepare_s": data["prepare_s"], "confidence": confidence, "runs": runs,
               **summarize(runs, cfg["methods"], confidence), "tuning": tuning,
               "plots": ["accuracy_per_epoch.png"]}
    plot_accuracy_curves(runs, cfg["methods"], out / "accuracy_per_epoch.png")
    if results["refresh_stats"]:
        plot_refresh_diagnostics(results["refresh_stats"], out / "misclustered_per_refresh.png",
                                 keys=("lcc_misclustered",))
        plot_refresh_diagnostics(results["refresh_stats"], out / "cluster_diagnostics.png")
        results["plots"] += ["misclustered_per_refresh.png", "cluster_diagnostics.png"]
    results = _jsonable(results)
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
