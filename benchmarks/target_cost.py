"""Per-batch cost of the clustering term's target search: 'knn-mean' against 'nearest'.

The clustering term looks up a target for every misclustered sample of every training
batch. This script measures that lookup, alone, on synthetic latents shaped like a
CIFAR training split: a refresh clusters them once (so the clusters, the flags and the
candidates are real), then batches of latents drawn from the split query the targets.
numpy's BLAS runs single-threaded, as during a fit. It reports milliseconds per batch
for ``lcc_target="knn-mean"`` at several ``k`` and for ``"nearest"`` (the estimator's
default ``n_representatives``: 32 representatives per cluster), and the refresh-time
cost of building each target structure.

Examples
--------
::

    python benchmarks/target_cost.py --n 50000 --d 10 512 --k 5 50 500 \
        --out bench-out/target-cost

"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from lccbench.config import estimator_default
from sklcc.refresh import refresh_clusters
from sklcc.representatives import make_targets


def synthetic_split(n: int, d: int, n_classes: int, seed: int = 0):
    """Gaussian classes with 10 % of the labels flipped, as float32 latents."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    centers = rng.normal(0, 3, (n_classes, d))
    Z = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    flip = rng.random(n) < 0.1
    y[flip] = rng.integers(0, n_classes, flip.sum())
    return Z, y


def time_queries(targets, Z, y, rows_per_batch: int, n_batches: int, rng) -> float:
    """Median milliseconds for one batch of ``rows_per_batch`` queries."""
    times = []
    for _ in range(n_batches):
        rows = rng.choice(len(Z), rows_per_batch, replace=False)
        start = time.perf_counter()
        targets.query(Z[rows], y[rows])
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def run(args: argparse.Namespace) -> list[dict]:
    """Measure every (d, target) cell."""
    rows = []
    for d in args.d:
        Z, y = synthetic_split(args.n, d, args.n_classes)
        state = refresh_clusters(Z, y, args.n_classes, cluster_sample_size=None,
                                 cluster_n_components=None, random_state=0)
        labels, correct = state.labels, state.correct
        # Queries come from the misclustered samples, as in training: a batch of
        # batch_size samples holds about batch_size * misclustered of them.
        mc = np.flatnonzero(~correct)
        per_batch = max(1, round(args.batch_size * len(mc) / args.n))
        cells = [("nearest", None)] + [("knn-mean", k) for k in args.k]
        for target, k in cells:
            start = time.perf_counter()
            index = make_targets(Z, y, labels, correct, target,
                                 n_representatives=estimator_default("n_representatives"), k=k,
                                 rng=np.random.default_rng(0))
            build_s = time.perf_counter() - start
            rng = np.random.default_rng(1)
            rows.append({
                "n": args.n, "d": d, "target": target, "k": k, "build_s": build_s,
                "n_clusters": int(labels.max() + 1),
                "misclustered": float(len(mc) / args.n), "queries_per_batch": per_batch,
                "ms_per_batch": time_queries(index, Z[mc], y[mc], per_batch, args.batches, rng),
                "ms_per_batch_all_rows": time_queries(index, Z, y, args.batch_size,
                                                      args.batches, rng),
            })
            print(rows[-1], flush=True)
    return rows


def to_markdown(rows: list[dict]) -> str:
    """One table row per (d, target, k)."""
    lines = ["| N | d | clusters | target | k | build s | misclustered rows / batch | "
             "ms / batch | ms / batch if all rows were misclustered |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['d']} | {r['n_clusters']} | {r['target']} | {r['k'] or ''} | "
            f"{r['build_s']:.2f} | {r['queries_per_batch']} | {r['ms_per_batch']:.2f} | "
            f"{r['ms_per_batch_all_rows']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    """Parse the command line, measure, write JSON and Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000, help="training samples")
    parser.add_argument("--d", type=int, nargs="+", default=[10, 512],
                        help="latent widths (10: CIFAR-10 logits; 512: a hidden layer)")
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--k", type=int, nargs="+", default=[5, 50, 500])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=50, help="timed batches per cell")
    parser.add_argument("--out", type=Path, default=Path("bench-out/target-cost"))
    args = parser.parse_args(argv)
    # As during a fit: numpy's BLAS single-threaded for the per-batch products.
    with threadpool_limits(limits=1, user_api="blas"):
        rows = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "cpus": __import__("os").cpu_count(),
               "python": platform.python_version()}
    (args.out / "target_cost.json").write_text(json.dumps(
        {"machine": machine, "args": vars(args) | {"out": str(args.out)}, "rows": rows},
        indent=2))
    table = to_markdown(rows)
    (args.out / "target_cost.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
