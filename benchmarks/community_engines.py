"""Louvain engines on kNN graphs of synthetic latents: networkx against networkit's PLM.

For each (N, k) the script builds the kNN graph of class-clustered Gaussian latents
once with :func:`sklcc.neighbors.knn_graph` (timed), then times
:func:`sklcc.communities.louvain_labels` with each engine (``--repeats`` runs, seeds
0, 1, ...; median seconds) and, separately, the graph construction each engine
starts with (networkx: ``nx.Graph`` from the edge list; networkit:
:func:`sklcc.communities.networkit_graph`). It reports the modularity of each
engine's partitions (median over the seeds), the adjusted Rand index between the
two engines' seed-0 partitions and against the true classes.

networkx is skipped where the graph has more than ``--networkx-max-edges`` edges
(about 30 microseconds per edge on one core, so 2M edges is a minute per run);
kNN graphs with more than ``--knn-max-directed`` neighbour pairs (N * k) are not
built (memory and hnswlib query time); both are said in the output.

    python benchmarks/community_engines.py --out bench-out/communities
    python benchmarks/community_engines.py --n 5000 --k 10 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import networkx as nx
import numpy as np
from sklearn.metrics import adjusted_rand_score

from sklcc.communities import louvain_labels, modularity, networkit_graph
from sklcc.neighbors import knn_graph


def synthetic_latents(
    n: int, d: int, n_classes: int, noise: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Latents of ``n_classes`` Gaussian classes: unit-normal centres, ``noise`` spread."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, d)).astype(np.float32)
    y = rng.integers(0, n_classes, n)
    Z = centers[y] + rng.normal(scale=noise, size=(n, d)).astype(np.float32)
    return Z, y


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _seconds(fn, repeats: int) -> tuple[float, list]:
    """Median wall time of ``fn(i)`` over ``repeats`` calls, and the results."""
    times, results = [], []
    for i in range(repeats):
        start = time.perf_counter()
        results.append(fn(i))
        times.append(time.perf_counter() - start)
    return float(np.median(times)), results


def _networkx_graph(edges: np.ndarray, n: int) -> nx.Graph:
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(edges.tolist())
    return graph


def _networkit_graph_one_thread(edges: np.ndarray, n: int):
    import networkit as nk

    threads = nk.getMaxNumberOfThreads()
    nk.setNumberOfThreads(1)  # as louvain_labels builds it
    try:
        return networkit_graph(edges, n)
    finally:
        nk.setNumberOfThreads(threads)


def measure_cell(n: int, k: int, args: argparse.Namespace) -> dict:
    """Build one kNN graph and time both engines on it."""
    row: dict = {"n": n, "k": k, "d": args.d, "classes": args.classes, "noise": args.noise}
    if n * k > args.knn_max_directed:
        row["skipped"] = (
            f"kNN graph not built: N*k = {n * k:,} neighbour pairs > --knn-max-directed "
            f"{args.knn_max_directed:,} (int64 id arrays ~{n * k * 8 * 6 / 1e9:.1f} GB at the "
            "peak of knn_graph; hnswlib queries with ef = 2k)"
        )
        return row
    Z, y = synthetic_latents(n, args.d, args.classes, args.noise)
    start = time.perf_counter()
    edges = knn_graph(Z, k)
    row["knn_s"] = time.perf_counter() - start
    row["n_edges"] = len(edges)
    del Z
    labels = {}
    engines = ["networkit", "networkx"]
    for engine in engines:
        if engine == "networkx" and len(edges) > args.networkx_max_edges:
            row["networkx_skipped"] = (
                f"{len(edges):,} edges > --networkx-max-edges {args.networkx_max_edges:,}"
            )
            continue
        build = _networkit_graph_one_thread if engine == "networkit" else _networkx_graph
        row[f"{engine}_build_s"], _ = _seconds(lambda i, b=build: b(edges, n), args.repeats)
        row[f"{engine}_s"], parts = _seconds(
            lambda i, e=engine: louvain_labels(edges, n, random_state=i, louvain_backend=e),
            args.repeats,
        )
        row[f"{engine}_modularity"] = float(np.median([modularity(edges, p) for p in parts]))
        row[f"{engine}_communities"] = int(np.median([p.max() + 1 for p in parts]))
        row[f"{engine}_ari_classes"] = float(adjusted_rand_score(y, parts[0]))
        labels[engine] = parts[0]
    if len(labels) == 2:
        row["ari_between"] = float(adjusted_rand_score(labels["networkx"], labels["networkit"]))
        row["speedup"] = row["networkx_s"] / row["networkit_s"]
    row["peak_mb"] = _peak_mb()
    return row


def to_markdown(rows: list[dict]) -> str:
    """One table row per (N, k); empty cells where a measurement was skipped."""
    lines = [
        "| N | k | edges | kNN s | nk build s | nk total s | nk Q | nk comms | "
        "nx build s | nx total s | nx Q | nx comms | ARI nk-nx | speed-up | ARI nk-classes | "
        "process peak MB so far |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []

    def f(row, key, fmt="{:.3f}"):
        return fmt.format(row[key]) if key in row else "—"

    for r in rows:
        if "skipped" in r:
            notes.append(f"- N={r['n']:,}, k={r['k']}: {r['skipped']}")
            lines.append(f"| {r['n']:,} | {r['k']} |" + " — |" * 14)
            continue
        if "networkx_skipped" in r:
            notes.append(f"- N={r['n']:,}, k={r['k']}: networkx not run, {r['networkx_skipped']}")
        lines.append(
            f"| {r['n']:,} | {r['k']} | {r['n_edges']:,} | {f(r, 'knn_s', '{:.1f}')} | "
            f"{f(r, 'networkit_build_s')} | {f(r, 'networkit_s')} | "
            f"{f(r, 'networkit_modularity', '{:.4f}')} | {f(r, 'networkit_communities', '{}')} | "
            f"{f(r, 'networkx_build_s')} | {f(r, 'networkx_s', '{:.2f}')} | "
            f"{f(r, 'networkx_modularity', '{:.4f}')} | {f(r, 'networkx_communities', '{}')} | "
            f"{f(r, 'ari_between')} | {f(r, 'speedup', '{:.0f}x')} | "
            f"{f(r, 'networkit_ari_classes')} | {f(r, 'peak_mb', '{:.0f}')} |"
        )
    return "\n".join(lines + [""] + notes) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n", type=int, nargs="+", default=[5_000, 50_000, 200_000],
                        help="numbers of latents")
    parser.add_argument("--k", type=int, nargs="+", default=[10, 50, 500],
                        help="neighbours per latent in the kNN graph")
    parser.add_argument("--d", type=int, default=64, help="latent dimension")
    parser.add_argument("--classes", type=int, default=100, help="Gaussian classes")
    parser.add_argument("--noise", type=float, default=2.0,
                        help="class spread (centres are unit normal); 2.0 gives a noisy "
                             "graph (modularity ~0.4), 0.8 well separated classes")
    parser.add_argument("--repeats", type=int, default=3,
                        help="Louvain runs per engine and cell (seeds 0..repeats-1)")
    parser.add_argument("--networkx-max-edges", type=int, default=500_000,
                        help="skip networkx on larger graphs")
    parser.add_argument("--knn-max-directed", type=int, default=25_000_000,
                        help="skip cells with N*k above this")
    parser.add_argument("--out", type=Path, default=Path("bench-out/communities"))
    args = parser.parse_args(argv)

    import networkit as nk

    rows = []
    for n in args.n:
        for k in args.k:
            if k >= n:
                continue
            row = measure_cell(n, k, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(),
               "python": platform.python_version(), "networkit": nk.__version__,
               "networkx": nx.__version__}
    (args.out / "community_engines.json").write_text(json.dumps(
        {"machine": machine, "args": vars(args) | {"out": str(args.out)}, "rows": rows},
        indent=2))
    table = to_markdown(rows)
    (args.out / "community_engines.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
