"""Benchmark: what LCCClassifier at its defaults costs against plain skorch.

Pairs of fits on the same module, data, optimizer and seed: skorch's own
``NeuralNetClassifier`` (cross-entropy alone) and ``LCCClassifier`` with every LCC
parameter at its default (refresh every epoch after one warm-up epoch, ``lcc_latents``
resolved by ``"auto"``). The pairs run one fit at a time, their order alternating, after
one unrecorded warm-up fit of each. Reported, as medians over the pairs:

- the fit-time ratio LCC / plain (per pair and their median) and the seconds LCC adds;
- per refresh: the refresh's seconds and its split (``lcc_latents_s``, ``lcc_graph_s``,
  ``lcc_communities_s``, ``lcc_assign_s``, ``lcc_index_s``);
- per batch: the training seconds per batch of the epochs after the first refresh
  (epoch time less the refresh), LCC against plain, and the part of it spent computing
  the clustering term (``penalty_term``: flags, target search, loss).

Two regimes (``--regime``):

- ``mlp`` (default): synthetic data, 30,000 samples x 128 features, 10 classes (seeded
  Gaussian blobs); MLP 128-256-10 (no dropout, no batch-norm), SGD (lr 0.05, momentum
  0.9), batch 256, 8 epochs, no validation split.
- ``cifar10-head``: the CIFAR-10 head regime of ``benchmarks/cifar100.py`` (cached
  backbone embeddings, its MLP head and recipe; every option after ``--`` goes to its
  command line, e.g. ``-- --image-size 128 --epochs 20``), with ``--lcc-warmup 1
  --lcc-interval 1``. Needs the embeddings (computed and cached by a first run).

``--set NAME=VALUE`` (repeatable) changes one of ``LCCClassifier``'s own parameters from
its default, to price a candidate default (``--set knn_algorithm=ivf --set lcc_interval=2``);
the plain fits are unchanged, so every ratio is still against plain skorch in the same run.

Writes ``default_cost.json`` and ``default_cost.md`` to ``--out``.

Examples
--------
::

    python benchmarks/default_cost.py --out bench-out/default-cost
    python benchmarks/default_cost.py --regime cifar10-head --out bench-out/default-cost-cifar \
        -- --image-size 128 --epochs 20
    python benchmarks/default_cost.py --set knn_algorithm=ivf --out bench-out/default-cost-ivf

"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skorch import NeuralNetClassifier

import sklcc
from sklcc import LCCClassifier
from sklcc.diagnostics import history_key

#: Per-refresh history keys reported (seconds), the whole refresh first.
REFRESH_SPLIT = ("refresh_s", "latents_s", "graph_s", "communities_s", "assign_s", "index_s")


class MLP(torch.nn.Module):
    """``n_features -> hidden -> ReLU -> n_classes`` logits: no dropout, no batch-norm."""

    def __init__(self, n_features: int = 128, hidden: int = 256, n_classes: int = 10):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(n_features, hidden), torch.nn.ReLU())
        self.out = torch.nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch."""
        return self.out(self.hidden(x))


class TimedLCCClassifier(LCCClassifier):
    """``LCCClassifier`` that adds up the seconds of its clustering term (``penalty_s_``)."""

    def penalty_term(self, y_true):
        """Time :meth:`LCCClassifier.penalty_term`."""
        start = time.perf_counter()
        term = super().penalty_term(y_true)
        self.penalty_s_ = getattr(self, "penalty_s_", 0.0) + time.perf_counter() - start
        return term


def synthetic(n_samples: int, n_features: int, n_classes: int, seed: int = 0):
    """Seeded Gaussian blobs: class means ~ N(0, 1), unit noise; float32 X, int64 y."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.0, (n_classes, n_features)).astype(np.float32)
    y = rng.integers(0, n_classes, n_samples)
    X = means[y] + rng.normal(0.0, 1.0, (n_samples, n_features)).astype(np.float32)
    return X.astype(np.float32), y.astype(np.int64)


def mlp_pair(args: argparse.Namespace) -> tuple[Any, Any, dict]:
    """Build the data and the two unfitted nets of the ``mlp`` regime (their seed: 0)."""
    X, y = synthetic(args.n_samples, args.n_features, 10)
    common = dict(module=MLP, module__n_features=args.n_features, module__hidden=args.hidden,
                  criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.SGD, lr=0.05,
                  optimizer__momentum=0.9, batch_size=args.batch_size,
                  max_epochs=args.epochs, iterator_train__shuffle=True, train_split=None,
                  verbose=0)
    data = {"X": X, "y": y, "shape": list(X.shape)}
    return (lambda: NeuralNetClassifier(**common),
            lambda: TimedLCCClassifier(**common, random_state=0, **args.set), data)


def lcc_own_parameters() -> set[str]:
    """``LCCClassifier``'s parameters that skorch's ``NeuralNetClassifier`` does not have."""
    return (set(inspect.signature(LCCClassifier).parameters)
            - set(inspect.signature(NeuralNetClassifier).parameters))


def cifar_pair(args: argparse.Namespace, extra: list[str]) -> tuple[Any, Any, dict]:
    """Build the data and the two unfitted nets of the ``cifar10-head`` regime.

    The LCC net is ``benchmarks/cifar100.py``'s ``lcc`` method at the estimator's
    defaults; the plain net is skorch's ``NeuralNetClassifier`` with the same skorch
    parameters (module, optimizer, schedule, batch size, epochs).
    """
    from lccbench.config import parse_args, resolve_config
    from lccbench.data import prepare_data
    from lccbench.methods import make_estimator

    argv = ["--out", str(args.out), "--dataset", "cifar10", "--finetune", "head",
            "--lcc-warmup", "1", "--lcc-interval", "1", "--methods", "lcc", *extra]
    cfg = resolve_config(parse_args(argv), argv=argv, script="default_cost.py")
    data = prepare_data(cfg)
    lcc = make_estimator("lcc", cfg, data, seed=0)
    own = lcc_own_parameters()
    skorch_params = {k: v for k, v in lcc.get_params(deep=False).items() if k not in own}
    lcc_params = {**lcc.get_params(deep=False), **args.set}
    return (lambda: NeuralNetClassifier(**skorch_params),
            lambda: TimedLCCClassifier(**lcc_params),
            {"X": data["X_train"], "y": data["y_train"], "shape": list(data["X_train"].shape),
             "config": {k: v for k, v in cfg.items() if k != "command"}})


def fit_timed(make, X, y, seed: int, max_epochs: int | None = None) -> tuple[Any, float]:
    """Fit a fresh net from ``make`` with torch seeded to ``seed``; return it and its seconds."""
    net = make()
    if max_epochs is not None:
        net.set_params(max_epochs=max_epochs)
    if isinstance(net, LCCClassifier):
        net.set_params(random_state=seed)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # plain skorch: the same stream LCC's random_state seeds
        net.fit(X, y)
    return net, time.perf_counter() - start


def epoch_split(plain, lcc) -> dict[str, float]:
    """Per-batch training seconds of the epochs after the first refresh, and the term's."""
    rows = [i for i, row in enumerate(lcc.history) if history_key("refresh_s") in row]
    epochs = [i for i in range(len(lcc.history)) if rows and i >= rows[0]]
    if not epochs:
        return {}

    def per_batch(net, refreshes: bool) -> float:
        # An epoch's dur includes its refresh, all of which training waited for.
        seconds = sum(net.history[i, "dur"] - (net.history[i].get(history_key("refresh_s"), 0.0)
                                                if refreshes else 0.0) for i in epochs)
        return seconds / sum(net.history[i, "train_batch_count"] for i in epochs)

    # Before the first refresh the term returns at once: its seconds are those epochs'.
    n_batches = sum(lcc.history[i, "train_batch_count"] for i in epochs)
    return {"plain_batch_s": per_batch(plain, False), "lcc_batch_s": per_batch(lcc, True),
            "penalty_batch_s": getattr(lcc, "penalty_s_", 0.0) / n_batches}


def run(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    """Warm up, then time ``args.pairs`` pairs; return the results."""
    make_plain, make_lcc, data = (cifar_pair(args, extra) if args.regime == "cifar10-head"
                                  else mlp_pair(args))
    X, y = data.pop("X"), data.pop("y")
    if args.threads:
        torch.set_num_threads(args.threads)
    # One-off costs (imports, pools, allocator growth) on a seeded draw of 2,000 samples:
    # cached embeddings come sorted by class, so their first rows hold one class.
    warm = np.random.default_rng(0).permutation(len(X))[:2000]
    for make in (make_plain, make_lcc):
        fit_timed(make, X[warm], y[warm], seed=0, max_epochs=2)
    pairs = []
    for i in range(args.pairs):
        order = ("plain", "lcc") if i % 2 == 0 else ("lcc", "plain")
        nets, seconds = {}, {}
        for name in order:
            nets[name], seconds[name] = fit_timed(make_plain if name == "plain" else make_lcc,
                                                  X, y, seed=i)
        lcc = nets["lcc"]
        refreshes = [{k: row[history_key(k)] for k in REFRESH_SPLIT}
                     for row in lcc.history if history_key("refresh_s") in row]
        pairs.append({
            "seed": i, "order": list(order), "plain_s": seconds["plain"],
            "lcc_s": seconds["lcc"], "ratio": seconds["lcc"] / seconds["plain"],
            "refreshes": refreshes,
            "refresh_median": {k: statistics.median(r[k] for r in refreshes)
                               for k in REFRESH_SPLIT} if refreshes else {},
            "batch": epoch_split(nets["plain"], lcc),
            # Packages before lcc_latents="auto" (as in a before/after run) have no
            # resolved value: their parameter is what ran.
            "lcc_latents": getattr(lcc, "lcc_latents_", lcc.lcc_latents),
            "lcc_latents_reason": getattr(lcc, "lcc_latents_reason_", "the parameter"),
            "engines": {k: lcc.history[-1].get(history_key(k))
                        for k in ("louvain_backend", "knn_algorithm")},
        })
    med = statistics.median
    summary = {
        "ratio_median": med(p["ratio"] for p in pairs),
        "ratio_of_medians": med(p["lcc_s"] for p in pairs) / med(p["plain_s"] for p in pairs),
        "plain_s": med(p["plain_s"] for p in pairs), "lcc_s": med(p["lcc_s"] for p in pairs),
        "refresh": {k: med(p["refresh_median"][k] for p in pairs) for k in REFRESH_SPLIT
                    if all(p["refresh_median"] for p in pairs)},
        "batch": {k: med(p["batch"][k] for p in pairs) for k in
                  ("plain_batch_s", "lcc_batch_s", "penalty_batch_s")
                  if all(p["batch"] for p in pairs)},
        "refreshes_per_fit": med(len(p["refreshes"]) for p in pairs),
    }
    return {"regime": args.regime, "data": data, "pairs": pairs, "summary": summary,
            "lcc_overrides": args.set,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "sklcc": {"path": str(Path(sklcc.__file__).parent),
                      "commit": _commit(Path(sklcc.__file__).parent)},
            "machine": {"python": platform.python_version(), "torch": torch.__version__,
                        "torch_threads": torch.get_num_threads(),
                        "processor": platform.processor() or platform.machine()}}


def _commit(folder: Path) -> str | None:
    """Commit of the git checkout holding ``folder`` (None outside one)."""
    import subprocess

    done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    return done.stdout.strip() or None


def render(results: dict[str, Any]) -> str:
    """Markdown report of :func:`run`'s results."""
    s = results["summary"]
    changed = ", ".join(f"{k}={v!r}" for k, v in results.get("lcc_overrides", {}).items())
    changed = changed or "none"
    out = [f"# Cost of LCCClassifier's defaults against plain skorch ({results['regime']})", "",
           f"`{results['command']}`; data {results['data']['shape']}; "
           f"{len(results['pairs'])} pairs, medians; torch threads "
           f"{results['machine']['torch_threads']}; sklcc from "
           f"`{results.get('sklcc', {}).get('path')}` at "
           f"{(results.get('sklcc', {}).get('commit') or 'no git checkout')[:7]}. "
           f"LCC parameters changed from the defaults: {changed}.", "",
           "| pair | order | plain s | LCC s | ratio | latents |", "|---|---|---|---|---|---|"]
    for p in results["pairs"]:
        out.append(f"| {p['seed']} | {' then '.join(p['order'])} | {p['plain_s']:.2f} | "
                   f"{p['lcc_s']:.2f} | {p['ratio']:.3f} | {p['lcc_latents']} |")
    out += ["", f"**Fit-time ratio LCC / plain: {s['ratio_median']:.3f}** (median of pairs; "
                f"ratio of medians {s['ratio_of_medians']:.3f}; "
                f"{s['lcc_s'] - s['plain_s']:+.2f} s per fit, "
                f"{s['refreshes_per_fit']:g} refreshes).", ""]
    if s["refresh"]:
        out += ["Per refresh (median seconds):", "",
                "| " + " | ".join(REFRESH_SPLIT) + " |", "|" + "---|" * len(REFRESH_SPLIT),
                "| " + " | ".join(f"{s['refresh'][k]:.3f}" for k in REFRESH_SPLIT) + " |", ""]
    if s["batch"]:
        b = s["batch"]
        out += ["Per training batch after the first refresh (median milliseconds):", "",
                "| plain | LCC | LCC - plain | of which the term (penalty_term) |",
                "|---|---|---|---|",
                f"| {1e3 * b['plain_batch_s']:.2f} | {1e3 * b['lcc_batch_s']:.2f} | "
                f"{1e3 * (b['lcc_batch_s'] - b['plain_batch_s']):.2f} | "
                f"{1e3 * b['penalty_batch_s']:.2f} |", ""]
    reasons = sorted({p["lcc_latents_reason"] for p in results["pairs"]})
    out += [f"lcc_latents resolved: {'; '.join(reasons)}", ""]
    return "\n".join(out)


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """Parse the options; those after ``--`` go to the CIFAR-10 benchmark's command line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--regime", choices=["mlp", "cifar10-head"], default="mlp")
    p.add_argument("--pairs", type=int, default=3, help="pairs of fits (plain, LCC)")
    p.add_argument("--n-samples", type=int, default=30_000, help="mlp: training samples")
    p.add_argument("--n-features", type=int, default=128, help="mlp: input features")
    p.add_argument("--hidden", type=int, default=256, help="mlp: hidden width (the latent)")
    p.add_argument("--batch-size", type=int, default=256, help="mlp: batch size")
    p.add_argument("--epochs", type=int, default=8, help="mlp: epochs")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="an LCCClassifier parameter changed from its default (repeatable); "
                        "VALUE is a Python literal, else a string")
    p.add_argument("--out", type=Path, required=True, help="folder for the JSON and markdown")
    args = p.parse_args(argv)
    args.set = parse_overrides(args.set, p.error)
    return args, extra


def parse_overrides(items: list[str], error) -> dict[str, Any]:
    """``["knn_algorithm=ivf", "lcc_interval=2"]`` -> ``{"knn_algorithm": "ivf", ...}``.

    Only ``LCCClassifier``'s own parameters (not skorch's: those would change the plain
    fit's recipe too), less ``random_state``, which each pair sets to its seed;
    ``error`` is called with a message naming the item and the fix.
    """
    own = sorted(lcc_own_parameters() - {"random_state"})
    overrides = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            error(f"--set {item!r}: expected NAME=VALUE, e.g. --set knn_algorithm=ivf")
        if name not in own:
            error(f"--set {item!r}: {name!r} is not one of LCCClassifier's own parameters "
                  f"({', '.join(own)})")
        try:
            overrides[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            overrides[name] = text
    return overrides


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``default_cost.json`` and ``default_cost.md``."""
    args, extra = parse(argv)
    results = run(args, extra)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "default_cost.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / "default_cost.md").write_text(render(results))
    print(render(results))
    return results


if __name__ == "__main__":
    main()
