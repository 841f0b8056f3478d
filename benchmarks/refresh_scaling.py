"""Refresh cost against the number of samples N and the latent dimension d.

For each (N, d) the script times one refresh of sklcc (kNN graph on a seeded
subsample, Louvain, nearest-neighbour assignment, representatives) on
synthetic class-clustered latents, split into its steps, with the process's peak
resident memory. In the same run, where N is small enough, it times the public
implementation's approach: exact kNN over every sample, networkx Louvain over every
sample and the exact nearest correctly clustered sample of the class as target. It
also reports how well the subsampled clustering agrees with the full one (adjusted
Rand index). On real latents, where Louvain is less stable, see
``benchmarks/clustering_agreement.py``.

Each measurement runs in a fresh process so that peak memory belongs to it alone.

    python benchmarks/refresh_scaling.py --out bench-out/refresh
    python benchmarks/refresh_scaling.py --n 10000 50000 --d 256   # issue 2's figures

``--cluster-sample-size`` and ``--cluster-n-components`` are the
:class:`sklcc.LCCClassifier` parameters of the same names, with their defaults.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

N_CLASSES = 100


def synthetic_latents(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class-clustered latents: 100 Gaussian classes, 10 % of labels flipped."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(N_CLASSES, d)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, n)
    Z = centers[y] + rng.normal(scale=0.8, size=(n, d)).astype(np.float32)
    flip = rng.random(n) < 0.1
    y[flip] = rng.integers(0, N_CLASSES, flip.sum())
    return Z.astype(np.float32), y


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_sklcc(n: int, d: int, seed: int = 0, *, cluster_sample_size: int | None,
                  cluster_n_components: int | None, n_neighbors: int,
                  louvain_backend: str | None, lcc_target: str, knn_algorithm: str) -> dict:
    """One sklcc refresh (the estimator's other defaults); seconds per step, peak memory."""
    from sklcc.communities import louvain_labels
    from sklcc.neighbors import NeighborSearch
    from sklcc.refresh import refresh_clusters

    Z, y = synthetic_latents(n, d, seed)
    # Each measurement runs in a fresh process: pay the engine's one-off import (about a
    # second for networkit) before the clock starts, as a fit pays it before its second
    # refresh.
    louvain_labels(np.array([[0, 1], [1, 2]]), 3, louvain_backend=louvain_backend)
    # ... and faiss's (the brute-force search), which a fit pays at its first refresh
    # only.
    NeighborSearch(Z[:64], "brute").query(Z[:64], 2)
    base_mb = _peak_mb()
    start = time.perf_counter()
    knn_mean = lcc_target == "knn-mean"
    state = refresh_clusters(Z, y, N_CLASSES, cluster_sample_size=cluster_sample_size,
                             cluster_n_components=cluster_n_components, random_state=seed,
                             n_neighbors=n_neighbors, louvain_backend=louvain_backend,
                             lcc_target=lcc_target, knn_algorithm=knn_algorithm)
    total = time.perf_counter() - start
    probe = Z[:: max(1, n // 2048)][:2048]
    start = time.perf_counter()
    state.targets.query(probe, y[:: max(1, n // 2048)][:2048])
    query_us = (time.perf_counter() - start) / len(probe) * 1e6
    projected = cluster_n_components is not None and cluster_n_components < d
    method = f"sklcc+pca{cluster_n_components}" if projected else "sklcc"
    engine = state.engines["louvain_backend"]
    method += (f" [{engine}, {state.engines['knn_algorithm']}"
               f"{'' if knn_algorithm == 'auto' else ' (forced)'}, k={n_neighbors}"
               f"{', knn-mean' if knn_mean else ''}]")
    return {"method": method, "n": n, "d": d, "cluster_sample_size": cluster_sample_size,
            "n_neighbors": n_neighbors, "cluster_n_components": cluster_n_components,
            "refresh_s": total, **state.engines, **state.timings,
            **{f"stat_{k}": v for k, v in state.stats.items()},
            "target_query_us": query_us, "peak_mb": _peak_mb(), "data_peak_mb": base_mb,
            "labels": state.labels.tolist()}


def measure_reference(n: int, d: int, seed: int = 0) -> dict:
    """Time the public implementation's approach: everything exact, over every sample."""
    from sklearn.neighbors import NearestNeighbors

    from sklcc.communities import louvain_labels
    from sklcc.matching import correctly_clustered, match_clusters
    from sklcc.neighbors import edges_from_neighbors

    Z, y = synthetic_latents(n, d, seed)
    start = time.perf_counter()
    nn_ = NearestNeighbors(n_neighbors=11, algorithm="brute").fit(Z)
    edges = edges_from_neighbors(nn_.kneighbors(Z, return_distance=False), 10)
    t1 = time.perf_counter()
    labels = louvain_labels(edges, n, random_state=seed, louvain_backend="networkx")
    t2 = time.perf_counter()
    correct = correctly_clustered(labels, y, match_clusters(labels, y, N_CLASSES))
    # target index: every correctly clustered sample of each class, searched exactly
    targets = {c: NearestNeighbors(n_neighbors=1, algorithm="brute").fit(Z[correct & (y == c)])
               for c in range(N_CLASSES) if (correct & (y == c)).any()}
    t3 = time.perf_counter()
    probe = Z[:: max(1, n // 2048)][:2048]
    probe_y = y[:: max(1, n // 2048)][:2048]
    start_q = time.perf_counter()
    for c in np.unique(probe_y):
        if c in targets:
            targets[c].kneighbors(probe[probe_y == c])
    query_us = (time.perf_counter() - start_q) / len(probe) * 1e6
    return {"method": "reference", "n": n, "d": d, "refresh_s": t3 - start, "graph_s": t1 - start,
            "communities_s": t2 - t1, "index_s": t3 - t2, "target_query_us": query_us,
            "peak_mb": _peak_mb(), "labels": labels.tolist()}


def run(args: argparse.Namespace) -> list[dict]:
    """Measure every configuration, one fresh process each."""
    from sklearn.metrics import adjusted_rand_score
    from tqdm import tqdm

    from lccbench.config import estimator_default

    # The full clustering, in the full latent space, for the ARI: the estimator's engines
    # and target.
    full = {"n_neighbors": args.n_neighbors, "cluster_sample_size": None,
            "cluster_n_components": None, **{name: estimator_default(name) for name in (
                "louvain_backend", "knn_algorithm", "lcc_target")}}

    jobs = [("sklcc", n, d, (engine, search)) for n in args.n for d in args.d
            for engine in args.louvain_backends for search in args.knn_algorithms
            for _ in range(args.repeats)]
    jobs += [("reference", n, d, "networkx") for n in args.n for d in args.d
             if n <= args.reference_max_n and d <= args.reference_max_d
             and not args.skip_reference]
    jobs += [("full", n, d, None) for n in args.n for d in args.d if n <= args.ari_max_n]
    rows = []
    ctx = get_context("spawn")
    for kind, n, d, engine in tqdm(jobs, desc="refresh scaling"):
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            if kind == "sklcc":
                engine, search = engine
                row = pool.submit(measure_sklcc, n, d, n_neighbors=args.n_neighbors,
                                  lcc_target=args.lcc_target,
                                  cluster_sample_size=args.cluster_sample_size,
                                  cluster_n_components=args.cluster_n_components,
                                  louvain_backend=engine, knn_algorithm=search).result()
            elif kind == "reference":
                row = pool.submit(measure_reference, n, d).result()
            else:
                row = pool.submit(measure_sklcc, n, d, **full).result()
                row["method"] = "sklcc-full"
        rows.append(row)
    rows = _median_of_repeats(rows)
    # agreement of the subsampled clustering with the full one (same N, d)
    by_key = {(r["method"], r["n"], r["d"]): r for r in rows}
    for (method, n, d), row in by_key.items():
        full = by_key.get(("sklcc-full", n, d))
        if method.startswith("sklcc") and method != "sklcc-full" and full is not None:
            row["ari_vs_full"] = adjusted_rand_score(full["labels"], row["labels"])
        ref = by_key.get(("reference", n, d))
        if method.startswith("sklcc") and ref is not None:
            row["ari_vs_reference"] = adjusted_rand_score(ref["labels"], row["labels"])
    for row in rows:
        row.pop("labels")
    return rows


def _median_of_repeats(rows: list[dict]) -> list[dict]:
    """Merge repeated measurements of one (method, N, d): median times, max peak memory."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["n"], row["d"]), []).append(row)
    merged = []
    for group in groups.values():
        row = dict(group[0])
        row["repeats"] = len(group)
        for key in ("refresh_s", "graph_s", "communities_s", "assign_s", "index_s",
                    "target_query_us"):
            if key in row:
                row[key] = float(np.median([g[key] for g in group]))
        row["peak_mb"] = max(g["peak_mb"] for g in group)
        merged.append(row)
    return merged


def to_markdown(rows: list[dict]) -> str:
    """Tables of the measured rows."""
    lines = ["| N | d | method | refresh s | graph s | Louvain s | assign s | index s | "
             "peak MB | ARI vs full | ARI vs reference | ratio reference/sklcc |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    sk = {(r["n"], r["d"]): r for r in rows
          if r["method"].startswith("sklcc") and r["method"] != "sklcc-full"}
    for r in sorted(rows, key=lambda r: (r["n"], r["d"], r["method"])):
        ratio = ""
        if r["method"] == "reference" and (r["n"], r["d"]) in sk:
            ratio = f"{r['refresh_s'] / sk[(r['n'], r['d'])]['refresh_s']:.1f}"

        def f(key, fmt="{:.2f}", r=r):
            return fmt.format(r[key]) if key in r else ""

        lines.append(
            f"| {r['n']:,} | {r['d']} | {r['method']} | {f('refresh_s')} | {f('graph_s')} | "
            f"{f('communities_s')} | {f('assign_s')} | {f('index_s')} | {f('peak_mb', '{:.0f}')} | "
            f"{f('ari_vs_full', '{:.3f}')} | {f('ari_vs_reference', '{:.3f}')} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from lccbench.config import estimator_default
    from sklcc.neighbors import KNN_ALGORITHMS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--d", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--cluster-sample-size", type=int,
                        default=estimator_default("cluster_sample_size"),
                        help="subsample the graph and Louvain see (0 for every sample)")
    parser.add_argument("--cluster-n-components", type=int,
                        default=estimator_default("cluster_n_components"),
                        help="PCA components before graph and assignment (0 for none)")
    parser.add_argument("--n-neighbors", type=int, default=estimator_default("n_neighbors"))
    parser.add_argument("--lcc-target", default=estimator_default("lcc_target"),
                        choices=["nearest", "knn-mean"])
    parser.add_argument("--louvain-backends", nargs="+",
                        default=[estimator_default("louvain_backend")],
                        type=lambda s: None if s == "default" else s,
                        help="Louvain engines to time side by side ('default' = the "
                             "estimator's default engine)")
    parser.add_argument("--knn-algorithms", nargs="+",
                        default=[estimator_default("knn_algorithm")],
                        choices=list(KNN_ALGORITHMS),
                        help="neighbour search engines to time side by side")
    parser.add_argument("--skip-reference", action="store_true",
                        help="do not time the exact reference approach")
    parser.add_argument("--reference-max-n", type=int, default=50_000,
                        help="largest N for the exact reference approach (it is slow)")
    parser.add_argument("--reference-max-d", type=int, default=256)
    parser.add_argument("--ari-max-n", type=int, default=50_000,
                        help="largest N at which the full sklcc clustering is run for the ARI")
    parser.add_argument("--repeats", type=int, default=1,
                        help="repeat each sklcc measurement and report the median time")
    parser.add_argument("--out", type=Path, default=Path("bench-out/refresh"))
    args = parser.parse_args(argv)
    # 0 on the command line: no subsample, no projection.
    args.cluster_sample_size = args.cluster_sample_size or None
    args.cluster_n_components = args.cluster_n_components or None
    rows = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "cpus": __import__("os").cpu_count(),
               "python": platform.python_version()}
    (args.out / "refresh_scaling.json").write_text(
        json.dumps({"machine": machine, "args": vars(args) | {"out": str(args.out)},
                    "rows": rows}, indent=2))
    table = to_markdown(rows)
    (args.out / "refresh_scaling.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
