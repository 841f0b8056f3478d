"""Agreement of the subsampled, projected clustering with the full one on real latents.

Trains the benchmark's MLP head with plain cross-entropy for a few epochs on cached
image embeddings (the ``head`` regime of ``benchmarks/cifar100.py``, same data
preparation and recipe), takes the hidden-layer latents of every training sample
in eval mode, and clusters them as a refresh does:

- ``full``: the kNN graph and Louvain (the default engines) over every sample, unprojected, with
  two seeds. How much these two agree is the yardstick: Louvain itself is not
  stable on real latents.
- the subsampled clusterings (``--cluster-sample-sizes``; 0 for every sample) with and
  without the PCA projection (``--cluster-n-components``), each with the same two
  seeds and each neighbour search engine of ``--knn-algorithms``: the
  :class:`sklcc.LCCClassifier` parameters of the same names.

Each clustering is one :func:`sklcc.refresh_clusters` (``random_state`` the seed, from
which the refresh draws its clustering seed, as a fit does). For each it reports the
time of that refresh, the number of clusters, the misclustered fraction,
the adjusted Rand index against the first full clustering, and the agreement of the
misclustered flags (the only thing the loss sees) with the first full clustering.

    python benchmarks/clustering_agreement.py --dataset cifar10 --out bench-out/agreement
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from lccbench.config import estimator_default, parse_args, resolve_config
from lccbench.data import prepare_data
from lccbench.methods import make_estimator
from sklcc.neighbors import KNN_ALGORITHMS
from sklcc.refresh import refresh_clusters


def hidden_latents(net, X: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Hidden-layer latents of the trained head, eval mode, no gradient."""
    module = net.module_.eval()
    with torch.no_grad():
        return torch.cat([
            module.head.hidden(module.features(torch.from_numpy(X[i:i + batch_size])))
            for i in range(0, len(X), batch_size)
        ]).numpy()


def run(args: argparse.Namespace) -> dict:
    """Train, cluster every way, compare."""
    argv = ["--dataset", args.dataset, "--finetune", "head", "--epochs", str(args.epochs),
            "--methods", "ce", "--seeds", str(args.train_seed), "--out", str(args.out)]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    cfg = resolve_config(parse_args(argv), argv, script=__file__)
    data = prepare_data(cfg)
    net = make_estimator("ce", cfg, data, seed=args.train_seed)
    net.fit(data["X_train"], data["y_train"])
    Z = hidden_latents(net, data["X_train"])
    y = np.asarray(data["y_train"], dtype=np.int64)
    n_classes = data["n_classes"]

    configs = [("full", None, None, "auto")]
    configs += [(f"sample={m or 'all'} pca={c or 'none'}"
                 + ("" if engine == "auto" else f" knn={engine}"), m or None, c or None, engine)
                for m in args.cluster_sample_sizes for c in args.cluster_n_components
                for engine in args.knn_algorithms]
    rows, reference = [], None
    for name, sample_size, n_components, engine in configs:
        for seed in args.seeds:
            start = time.perf_counter()
            state = refresh_clusters(Z, y, n_classes, n_neighbors=args.n_neighbors,
                                     cluster_sample_size=sample_size,
                                     cluster_n_components=n_components, random_state=seed,
                                     knn_algorithm=engine)
            seconds = time.perf_counter() - start
            labels, flags = state.labels, state.misclustered
            if reference is None:
                reference = (labels, flags)
            rows.append({
                "config": name, "seed": seed, "seconds": seconds,
                "knn_algorithm": state.engines["knn_algorithm"],
                "n_clusters": int(labels.max() + 1), "modularity": state.stats["modularity"],
                "misclustered": float(flags.mean()),
                "ari_vs_full": float(adjusted_rand_score(reference[0], labels)),
                "flag_agreement_vs_full": float((flags == reference[1]).mean()),
            })
            print(json.dumps(rows[-1]), flush=True)
    return {"args": {k: str(v) for k, v in vars(args).items()}, "n_train": len(y),
            "latent_dim": int(Z.shape[1]), "rows": rows}


def to_markdown(report: dict) -> str:
    """Table of the rows, the first full clustering as reference."""
    lines = [f"{report['n_train']:,} training latents of dimension {report['latent_dim']}; "
             "reference: the full clustering with the first seed.", "",
             "| clustering | seed | search | seconds | clusters | misclustered | ARI vs full | "
             "flags agreeing with full |", "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['config']} | {r['seed']} | {r['knn_algorithm']} | "
                     f"{r['seconds']:.2f} | {r['n_clusters']} | "
                     f"{r['misclustered']:.3f} | {r['ari_vs_full']:.3f} | "
                     f"{r['flag_agreement_vs_full']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=8,
                        help="cross-entropy epochs before the latents are taken")
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2],
                        help="clustering seeds")
    parser.add_argument("--n-neighbors", type=int, default=estimator_default("n_neighbors"))
    parser.add_argument("--cluster-sample-sizes", type=int, nargs="+",
                        default=[10_000, 5000, 3000],
                        help="subsample sizes to compare (0: every sample)")
    parser.add_argument("--cluster-n-components", type=int, nargs="+", default=[0, 64],
                        help="PCA components to compare (0: no projection)")
    parser.add_argument("--knn-algorithms", nargs="+", default=["auto"],
                        choices=list(KNN_ALGORITHMS),
                        help="neighbour search engines to compare (the reference uses 'auto')")
    parser.add_argument("--out", type=Path, default=Path("bench-out/agreement"))
    args = parser.parse_args(argv)
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "clustering_agreement.json").write_text(json.dumps(report, indent=2))
    table = to_markdown(report)
    (args.out / "clustering_agreement.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
