"""The benchmark's command line and the configuration it resolves to.

Flags that set an estimator parameter carry its name (``--louvain-resolution`` sets
``louvain_resolution``) and, where the benchmark does not choose its own value, its
default, read from the estimator's signature. Image size (``--image-size``, pixels)
and Louvain resolution are never both called "resolution".
"""

from __future__ import annotations

import argparse
import inspect
import shlex
import sys
from typing import Any

from sklcc import CenterLossClassifier, LCCClassifier
from sklcc.neighbors import KNN_ALGORITHMS
from sklcc.representatives import AUTO_REPRESENTATIVES

from .models import PLACEMENTS, parse_finetune

__all__ = ["BASE_METHODS", "DEFAULT_METHODS", "GRID_PREFIX", "PRESETS", "QUICK", "SMOOTHED",
           "SWEEP_PREFIX", "estimator_default",
           "grid_method", "parse_args", "parse_grid_method", "resolve_config"]

BASE_METHODS = ("ce", "lcc", "center", "lcc-tuned", "ce-tuned", "ce+ls", "lcc+ls")
#: Suffix of a method trained with label-smoothed cross-entropy (``--label-smoothing``).
SMOOTHED = "+ls"
DEFAULT_METHODS = ("ce", "lcc", "center", "lcc-tuned")
#: Method name of one point of ``--louvain-resolution-sweep``, followed by its value.
SWEEP_PREFIX = "lcc@louvain_resolution="
#: Method name of one cell of the ``--grid-*`` grid: ``lcc@w=<weight>,k=<k>,layer=<placement>``
#: (the published clustering, whatever the ``lcc`` options say).
GRID_PREFIX = "lcc@w="
#: Named recipes: defaults for a whole run, each overridable on the command line.
PRESETS = {
    # The recipe behind the paper's CIFAR-100 figures (../shared/docs/lcc-algorithm.md,
    # "Published figures"): full fine-tuning of ImageNet weights at 224 px, SGD 0.1 with
    # momentum 0.9, cosine over 50 epochs, batch 256, gradient norm clipped at 1, the
    # first 80 % of the training split, seeds 0-2, a linear classifier; LCC with the
    # exact knn-mean target, one k for graph and target, refreshed every epoch from
    # epoch 1 on the whole training split, over w x k x placement (the grid cells carry
    # the published clustering themselves: lccbench.methods.PUBLISHED_LCC).
    "published": {
        "dataset": "cifar100", "finetune": "full", "image_size": 224, "epochs": 50,
        "batch_size": 256, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
        "weight_decay": 0.0, "grad_clip": 1.0, "train_fraction": 0.8, "seeds": [0, 1, 2],
        "hidden": 0, "dropout": 0.0, "methods": ["ce"], "lcc_warmup": 1, "lcc_interval": 1,
        "grid_weights": [1e-2, 1e-4], "grid_k": [5, 50, 500],
        "grid_layers": ["logits", "last-stage"],
    },
}


def grid_method(weight: float, k: int, placement: str) -> str:
    """Name the method of one grid cell.

    Examples
    --------
    >>> grid_method(0.01, 50, "logits")
    'lcc@w=0.01,k=50,layer=logits'

    """
    return f"{GRID_PREFIX}{weight:g},k={k},layer={placement}"


def parse_grid_method(method: str) -> tuple[float, int, str]:
    """Weight, k and placement of a grid method name (inverse of :func:`grid_method`).

    Examples
    --------
    >>> parse_grid_method("lcc@w=0.0001,k=500,layer=last-stage")
    (0.0001, 500, 'last-stage')

    """
    try:
        fields = dict(part.split("=", 1) for part in method.removeprefix("lcc@").split(","))
        return float(fields["w"]), int(fields["k"]), fields["layer"]
    except (KeyError, ValueError) as err:
        raise ValueError(f"method {method!r} is not a grid cell like "
                         f"{grid_method(0.01, 50, 'logits')!r}") from err
#: Settings ``--quick`` uses unless given on the command line.
QUICK = {"epochs": 3, "seeds": [0, 1], "lcc_warmup": 1, "lcc_interval": 1, "tune_trials": 2,
         "train_subset": 2000, "test_subset": 1000, "threads": 1}
#: Defaults of the full benchmark, for the options ``--quick`` changes.
FULL = {"epochs": 30, "seeds": [0, 1, 2, 3, 4], "lcc_warmup": 10, "lcc_interval": 1,
        "tune_trials": 10, "train_subset": None, "test_subset": None, "threads": None}


def estimator_default(name: str, estimator: type = LCCClassifier) -> Any:
    """Return the default of an estimator's parameter, read from its signature.

    The estimator's signature is the one place a default is written; every benchmark
    reads it from there, so a changed default reaches every flag and script.

    Parameters
    ----------
    name : str
        The parameter.
    estimator : type, default=LCCClassifier
        The estimator class.

    Returns
    -------
    default
        The value the estimator uses when ``name`` is not given.

    Examples
    --------
    >>> estimator_default("n_neighbors") == LCCClassifier(None).get_params()["n_neighbors"]
    True

    """
    return inspect.signature(estimator).parameters[name].default


def _auto_or_int(text: str) -> str | int:
    """Parse ``'auto'`` or an integer (the type of ``--n-representatives``)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer, got {text!r}") from None


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show a default only where it is a value (None means 'see the help text')."""

    def _get_help_string(self, action):
        if action.default in (None, False, []):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: list[str] | None = None, description: str | None = None
               ) -> argparse.Namespace:
    """Parse the command line of ``benchmarks/cifar100.py``.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.
    description : str, optional
        First paragraph of ``--help``.

    Returns
    -------
    argparse.Namespace
        Options; those left as None are filled in by :func:`resolve_config`.

    """
    p = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a named recipe whose settings become the defaults (flags given "
                        "still win): 'published' is the paper's CIFAR-100 recipe and grid, "
                        "documented in docs/benchmarks.md")
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
    g.add_argument("--image-size", type=int, default=None,
                   help="image side in pixels the backbone sees (default 128; 32 for digits)")
    g.add_argument("--finetune", default="head",
                   help="head (frozen backbone, cached embeddings), last-blocks:N (cached "
                        "activations entering the last N blocks; those blocks train) or full")
    g.add_argument("--hidden", type=int, default=512, help="width of the head's hidden layer")
    g.add_argument("--dropout", type=float, default=0.5, help="dropout after the hidden layer")
    g.add_argument("--train-subset", type=int, default=None,
                   help="use a stratified subset of this many training images")
    g.add_argument("--train-fraction", type=float, default=None,
                   help="train on the first fraction of the training split, in the loader's "
                        "order, as the published recipe does (0.8)")
    g.add_argument("--test-subset", type=int, default=None,
                   help="use a stratified subset of this many test images")
    g.add_argument("--device", default="cpu", help="cpu or cuda")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 with --quick). On a "
                        "busy shared machine 1 thread can be several times faster than 2")

    g = p.add_argument_group("training (identical for every method)")
    g.add_argument("--epochs", type=int, default=None, help=f"epochs (default {FULL['epochs']})")
    g.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    g.add_argument("--lr", type=float, default=1e-3, help="learning rate (cosine schedule)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=1e-2, help="weight decay")
    g.add_argument("--grad-clip", type=float, default=None,
                   help="clip the gradient norm at this value (skorch GradientNormClipping)")
    g.add_argument("--batch-size", type=int, default=256, help="training batch size")
    g.add_argument("--seeds", type=int, nargs="+", default=None,
                   help=f"default {' '.join(map(str, FULL['seeds']))}")
    g.add_argument("--methods", nargs="+", default=None,
                   help=f"any of {', '.join(BASE_METHODS)} (default: "
                        f"{' '.join(DEFAULT_METHODS)}); ce is always run, lcc-tuned brings "
                        "ce-tuned; ce+ls and lcc+ls are ce and lcc with label-smoothed "
                        "cross-entropy")
    g.add_argument("--label-smoothing", type=float, default=0.1,
                   help="label smoothing of the +ls methods (torch.nn.CrossEntropyLoss's "
                        "label_smoothing); the other methods use none")

    g = p.add_argument_group("LCC (sklcc.LCCClassifier parameters of the same names)")
    g.add_argument("--lcc-weight", type=float, default=0.03,
                   help="weight of the LCC term (the benchmark's recipe, not the estimator's "
                        "default)")
    g.add_argument("--lcc-warmup", type=int, default=None,
                   help=f"default {FULL['lcc_warmup']}")
    g.add_argument("--lcc-interval", type=int, default=None,
                   help=f"default {FULL['lcc_interval']}")
    g.add_argument("--louvain-resolution", type=float,
                   default=estimator_default("louvain_resolution"),
                   help="Louvain resolution of the lcc method (higher: more, smaller clusters)")
    g.add_argument("--louvain-resolution-sweep", type=float, nargs="*", default=[],
                   help=f"also run {SWEEP_PREFIX}R (lcc with that Louvain resolution) for "
                        "each R")
    g.add_argument("--n-neighbors", type=int, default=estimator_default("n_neighbors"),
                   help="neighbours per sample in the kNN graph")
    g.add_argument("--n-representatives", type=_auto_or_int,
                   default=estimator_default("n_representatives"),
                   help="correctly clustered samples drawn per cluster as targets of "
                        "--lcc-target nearest (0 for all); 'auto': "
                        f"{AUTO_REPRESENTATIVES} under nearest, every one under knn-mean")
    g.add_argument("--lcc-target", choices=["nearest", "knn-mean"],
                   default=estimator_default("lcc_target"),
                   help="the nearest representative, or the published mean of the k nearest "
                        "correctly clustered samples per owned cluster")
    g.add_argument("--grid-weights", type=float, nargs="*", default=[],
                   help=f"with --grid-k and --grid-layers: also run every cell "
                        f"{GRID_PREFIX}W,k=K,layer=L (lcc_weight W, one k for graph and "
                        "target, latents at L, and the published clustering: knn-mean "
                        "target, every sample, no projection, whatever the lcc options say)")
    g.add_argument("--grid-k", type=int, nargs="*", default=[])
    g.add_argument("--grid-layers", nargs="*", default=[],
                   help="placements: logits, last-stage")
    g.add_argument("--louvain-backend", default=estimator_default("louvain_backend"),
                   help="Louvain engine of every LCC method (networkit, networkx, ...; "
                        "default: the estimator's choice)")
    g.add_argument("--knn-algorithm", choices=list(KNN_ALGORITHMS),
                   default=estimator_default("knn_algorithm"),
                   help="neighbour search of the kNN graph (every LCC method)")
    g.add_argument("--cluster-sample-size", type=int,
                   default=estimator_default("cluster_sample_size"),
                   help="samples the graph and Louvain see (0 for every sample)")
    g.add_argument("--cluster-n-components", type=int,
                   default=estimator_default("cluster_n_components"),
                   help="PCA components the clustering works in (0 for none)")

    g = p.add_argument_group("center loss (sklcc.CenterLossClassifier parameters)")
    g.add_argument("--center-weight", type=float,
                   default=estimator_default("center_weight", CenterLossClassifier),
                   help="weight of the center loss")
    g.add_argument("--center-lr", type=float,
                   default=estimator_default("center_lr", CenterLossClassifier),
                   help="learning rate of the centers' parameter group")

    g = p.add_argument_group("tuning (lcc-tuned, ce-tuned)")
    g.add_argument("--tune-trials", type=int, default=None,
                   help=f"Optuna trials per tuned method (default {FULL['tune_trials']})")
    g.add_argument("--tune-valid-fraction", type=float, default=0.2,
                   help="fraction of the training data held out to score trials")

    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, help="folder for results.json, results.md, PNGs")
    g.add_argument("--allow-mixed-runs", action="store_true",
                   help="report runs of one method whose configuration or engines differ "
                        "(refused otherwise), listing the differences")
    g.add_argument("--min-effect", type=float, default=None,
                   help="smallest gain of lcc over ce worth its cost, in points of top-1: "
                        "the report then states the pre-registered verdict "
                        "(docs/benchmarks.md)")
    g.add_argument("--quick", action="store_true",
                   help=f"a fast pass through everything: {QUICK} unless given")
    preset, _ = p.parse_known_args(argv)
    if preset.preset:
        p.set_defaults(**PRESETS[preset.preset])
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace, argv: list[str] | None = None,
                   script: str | None = None) -> dict[str, Any]:
    """Fill in defaults (and ``--quick`` settings) and check the options.

    Parameters
    ----------
    args : argparse.Namespace
        From :func:`parse_args`.
    argv : list of str, optional
        The arguments parsed, recorded in the command; default ``sys.argv[1:]``.
    script : str, optional
        The program, recorded in the command; default ``sys.argv[0]``.

    Returns
    -------
    dict
        The full configuration, as recorded in ``results.json``.

    """
    cfg = dict(vars(args))
    for key, default in FULL.items():
        if cfg[key] is None:
            cfg[key] = QUICK[key] if args.quick else default
    if cfg["image_size"] is None:
        cfg["image_size"] = 32 if cfg["dataset"] == "digits" else 128
    # 0 on the command line: no subsample, no projection, every candidate.
    cfg["cluster_sample_size"] = cfg["cluster_sample_size"] or None
    cfg["cluster_n_components"] = cfg["cluster_n_components"] or None
    # 'auto' is recorded as what it resolves to, so a recipe reads the same whether its
    # value was given or defaulted (and stores written before 'auto' still resume).
    knn_mean = cfg["lcc_target"] == "knn-mean"
    if cfg["n_representatives"] == "auto":
        cfg["n_representatives"] = None if knn_mean else AUTO_REPRESENTATIVES
    elif knn_mean and cfg["n_representatives"]:
        raise SystemExit(f"--lcc-target knn-mean takes every correctly clustered sample, so "
                         f"--n-representatives {cfg['n_representatives']} contradicts it: "
                         "leave it out ('auto') or pass 0.")
    cfg["n_representatives"] = cfg["n_representatives"] or None
    grid = [cfg["grid_weights"], cfg["grid_k"], cfg["grid_layers"]]
    if any(grid) and not all(grid):
        raise SystemExit("--grid-weights, --grid-k and --grid-layers go together; got "
                         f"{grid}.")
    bad = [layer for layer in cfg["grid_layers"] if layer not in PLACEMENTS]
    if bad:
        raise SystemExit(f"--grid-layers {bad}: choose from {list(PLACEMENTS)}.")
    if not 0 <= cfg["label_smoothing"] < 1:
        raise SystemExit(f"--label-smoothing {cfg['label_smoothing']}: expected 0 <= value "
                         "< 1 (0.1 is the usual choice).")
    if cfg["train_fraction"] is not None and not 0 < cfg["train_fraction"] <= 1:
        raise SystemExit(f"--train-fraction {cfg['train_fraction']}: expected 0 < f <= 1.")
    try:
        parse_finetune(cfg["finetune"])
    except ValueError as err:
        raise SystemExit(f"--finetune: {err}") from err
    if any(r <= 0 for r in [cfg["louvain_resolution"], *cfg["louvain_resolution_sweep"]]):
        raise SystemExit(
            f"--louvain-resolution {cfg['louvain_resolution']} / --louvain-resolution-sweep "
            f"{cfg['louvain_resolution_sweep']}: every Louvain resolution must be > 0 (1 is "
            "standard Louvain)."
        )
    cfg["seeds"] = list(dict.fromkeys(cfg["seeds"]))

    methods = list(dict.fromkeys(cfg["methods"] or DEFAULT_METHODS))
    unknown = [m for m in methods if m not in BASE_METHODS]
    if unknown:
        raise SystemExit(f"--methods {unknown} unknown; choose from {list(BASE_METHODS)}.")
    if "ce" not in methods:
        methods.insert(0, "ce")  # every paired difference is taken against it
    if "lcc-tuned" in methods and "ce-tuned" not in methods:
        methods.append("ce-tuned")  # CE gets the same tuning budget
    methods += [f"{SWEEP_PREFIX}{r:g}" for r in cfg["louvain_resolution_sweep"]]
    methods += [grid_method(w, k, layer) for w in cfg["grid_weights"] for k in cfg["grid_k"]
                for layer in cfg["grid_layers"]]
    cfg["methods"] = methods
    if cfg["lcc_warmup"] >= cfg["epochs"] and any(m.startswith("lcc") for m in methods):
        raise SystemExit(
            f"--lcc-warmup {cfg['lcc_warmup']} >= --epochs {cfg['epochs']}: LCC would never "
            "refresh and train exactly like ce; lower the warm-up or raise the epochs."
        )
    argv = sys.argv[1:] if argv is None else argv
    script = sys.argv[0] if script is None else script
    cfg["command"] = " ".join(shlex.quote(a) for a in [sys.executable, script, *argv])
    return cfg
