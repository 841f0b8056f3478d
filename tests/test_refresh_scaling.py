import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ten spawned processes, each importing the numpy stack
def test_refresh_scaling_runs_and_reports(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "refresh_scaling.py"), "--n", "1200",
         "--d", "8", "--cluster-sample-size", "600", "--repeats", "2",
         "--louvain-backends", "networkx", "networkit", "--knn-algorithms", "auto", "hnsw",
         "--out", str(tmp_path)],
        check=True, capture_output=True, timeout=300,
    )
    report = json.loads((tmp_path / "refresh_scaling.json").read_text())
    rows = {r["method"]: r for r in report["rows"]}
    # 600 x 1200 distances: "auto" is the brute force; "hnsw" is forced
    assert set(rows) == {"sklcc [networkx, brute, k=10]", "sklcc [networkit, brute, k=10]",
                         "sklcc [networkx, hnsw (forced), k=10]",
                         "sklcc [networkit, hnsw (forced), k=10]", "reference", "sklcc-full"}
    assert rows["sklcc [networkx, brute, k=10]"]["louvain_backend"] == "networkx"
    assert rows["sklcc [networkit, hnsw (forced), k=10]"]["knn_algorithm"] == "hnsw"
    sk = rows["sklcc [networkit, brute, k=10]"]
    assert sk["louvain_backend"] == "networkit" and sk["knn_algorithm"] == "brute"
    assert sk["n"] == 1200 and sk["cluster_sample_size"] == 600 and sk["repeats"] == 2
    split = sk["graph_s"] + sk["communities_s"] + sk["assign_s"] + sk["index_s"]
    assert split <= sk["refresh_s"] + 1e-6
    assert -1.0 <= sk["ari_vs_full"] <= 1.0
    assert sk["peak_mb"] > 0
    table = (tmp_path / "refresh_scaling.md").read_text()
    assert "| 1,200 | 8 | reference |" in table
