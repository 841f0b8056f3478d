"""Neighbour search engines for the kNN graph: hnswlib, scipy's KD-tree, faiss (brute force, IVF).

For each (N, d, k) the script builds the kNN graph of class-clustered Gaussian latents
(:func:`synthetic_latents`: 10 classes, unit-normal centres, spread 1) with
:func:`sklcc.neighbors.knn_graph` once per engine, ``--repeats`` times (median
seconds, search build included), and reports each approximate engine's recall
(hnswlib's and faiss's inverted-file index, ``"ivf"``): the fraction of the exact graph's
edges it finds. ``--engines`` picks the engines. ``--torch`` adds, in the same run, the
exact search by torch's matrix products and ``topk`` (:func:`sklcc.neighbors.exact_neighbors`:
the CPU brute force before faiss, and still where faiss is not used and on a GPU). It
also prints what ``knn_algorithm="auto"`` picks for the shape, so the rule in
:func:`sklcc.neighbors.resolve_knn_algorithm` can be read against the measurements.

Where an engine is known to be far off the pace it is skipped and said so: the
KD-tree above ``--kd-tree-max-features`` features, hnswlib above
``--hnsw-max-work`` (N * k neighbour pairs; about 200 s at 50,000 x 500).

    python benchmarks/knn_engines.py --out docs/results/knn-engines
    python benchmarks/knn_engines.py --n 5000 --d 64 --k 10 --repeats 5 --out bench-out/knn
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from sklcc.neighbors import NeighborSearch, knn_graph, resolve_knn_algorithm

ENGINES = ("kd_tree", "brute", "hnsw", "ivf")
APPROXIMATE = ("hnsw", "ivf")


def _graph(Z: np.ndarray, k: int, engine: str, seed: int) -> np.ndarray:
    if engine == "torch":  # sklcc's brute force where faiss is not used (macOS, Windows)
        return knn_graph(Z, k, index=NeighborSearch(Z, device="cpu"))
    return knn_graph(Z, k, knn_algorithm=engine, random_state=seed)


def synthetic_latents(n: int, d: int, n_classes: int = 10, noise: float = 1.0,
                      seed: int = 0) -> np.ndarray:
    """Latents of ``n_classes`` Gaussian classes: unit-normal centres, ``noise`` spread."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, d)).astype(np.float32)
    return centers[rng.integers(0, n_classes, n)] + rng.normal(
        scale=noise, size=(n, d)).astype(np.float32)


def measure(n: int, d: int, k: int, repeats: int, kd_tree_max_features: int,
            hnsw_max_work: int, engines: tuple[str, ...] = ENGINES) -> dict:
    """Median seconds and recall of every engine on one shape."""
    Z = synthetic_latents(n, d)
    row = {"n": n, "d": d, "k": k, "auto": resolve_knn_algorithm("auto", n, d, k + 1)}
    exact = None
    for engine in engines:
        if engine == "kd_tree" and d > kd_tree_max_features:
            row[engine] = {"skipped": f"d > {kd_tree_max_features}"}
            continue
        if engine == "hnsw" and n * k > hnsw_max_work:
            row[engine] = {"skipped": f"N * k > {hnsw_max_work}"}
            continue
        times = []
        for i in range(repeats):
            start = time.perf_counter()
            edges = _graph(Z, k, engine, i)
            times.append(time.perf_counter() - start)
        cell = {"seconds": float(np.median(times)), "edges": len(edges)}
        if engine not in APPROXIMATE:
            exact = edges if exact is None else exact
        elif exact is not None:
            found = np.intersect1d(edges[:, 0] * n + edges[:, 1], exact[:, 0] * n + exact[:, 1])
            cell["recall"] = len(found) / len(exact)
        row[engine] = cell
        print(f"N={n:>6} d={d:>4} k={k:>4} {engine:>8}: {cell['seconds']:8.2f} s"
              + (f"  recall {cell['recall']:.3f}" if "recall" in cell else ""), flush=True)
    return row


def _markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"# Neighbour search engines ({meta['machine']}, {meta['threads']} torch threads, "
             f"faiss {meta['faiss']})", "", f"`{meta['command']}`", "",
             "| N | d | k | kd_tree s | brute s | hnsw s | hnsw recall | ivf s | ivf recall "
             "| fastest | auto | torch brute s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def cell(r, e, key="seconds"):
        c = r.get(e, {})
        return "—" if key not in c else f"{c[key]:.2f}" if key == "seconds" else f"{c[key]:.3f}"

    for r in rows:
        timed = {e: r[e]["seconds"] for e in ENGINES if "seconds" in r.get(e, {})}
        fastest = min(timed, key=timed.get)
        lines.append(f"| {r['n']:,} | {r['d']} | {r['k']} | {cell(r, 'kd_tree')} | "
                     f"{cell(r, 'brute')} | {cell(r, 'hnsw')} | {cell(r, 'hnsw', 'recall')} | "
                     f"{cell(r, 'ivf')} | {cell(r, 'ivf', 'recall')} | "
                     f"{fastest} | {r['auto']} | {cell(r, 'torch')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the grid of shapes and write ``results.json`` and ``results.md``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[5000, 20000, 50000])
    p.add_argument("--d", type=int, nargs="+", default=[10, 64, 256, 512])
    p.add_argument("--k", type=int, nargs="+", default=[10, 50, 500])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--kd-tree-max-features", type=int, default=64)
    p.add_argument("--hnsw-max-work", type=int, default=2_500_000)
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES),
                   help="engines to time (the recall needs an exact one: kd_tree or brute)")
    p.add_argument("--torch", action="store_true",
                   help="also time the exact search by torch's matrix products and topk")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    engines = tuple(e for e in ENGINES if e in args.engines) + (("torch",) if args.torch else ())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"command": "python benchmarks/knn_engines.py " + " ".join(argv or []),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "threads": torch.get_num_threads(), "faiss": faiss.__version__}
    rows = [measure(n, d, k, args.repeats, args.kd_tree_max_features, args.hnsw_max_work,
                    engines) for n in args.n for d in args.d for k in args.k if k < n]
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (out / "results.md").write_text(_markdown(rows, meta))
    print(_markdown(rows, meta))
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
