"""Tests of the fine-tuning benchmark: its statistics on known answers, its methods, a quick run.

``lccbench`` is importable through pytest's ``pythonpath = ["benchmarks"]`` setting.
"""

import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from lccbench import report, stats
from lccbench.config import parse_args, resolve_config
from lccbench.methods import make_estimator
from lccbench.models import HIDDEN_LAYER, parse_finetune
from sklcc import CenterLossClassifier, LatentPenaltyClassifier, LCCClassifier
from sklcc.diagnostics import STAT_KEYS, TIMING_KEYS, history_key

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"

# --------------------------------------------------------------------------- statistics


def test_paired_summary_known_answer():
    # diffs 1, 2, 1, 2: mean 1.5, sd 1/sqrt(3), se 1/sqrt(12), t = 1.5 * sqrt(12) = 5.196,
    # t_{0.975, 3} = 3.182446; two-sided p of t=5.196 with 3 df = 0.013846.
    s = stats.paired_summary([2.0, 4.0, 4.0, 6.0], [1.0, 2.0, 3.0, 4.0])
    assert s.n == 4
    assert s.diffs == [1.0, 2.0, 1.0, 2.0]
    assert s.mean_diff == pytest.approx(1.5)
    assert s.std_diff == pytest.approx(1 / math.sqrt(3))
    half = 3.182446305284263 / math.sqrt(12)
    assert s.ci_low == pytest.approx(1.5 - half, abs=1e-9)
    assert s.ci_high == pytest.approx(1.5 + half, abs=1e-9)
    assert s.p_value == pytest.approx(0.013846, abs=1e-6)


def test_paired_summary_direction_and_symmetry():
    a, b = [0.7, 0.8, 0.75], [0.72, 0.79, 0.70]
    ab, ba = stats.paired_summary(a, b), stats.paired_summary(b, a)
    assert ab.mean_diff == pytest.approx(-ba.mean_diff)
    assert ab.p_value == pytest.approx(ba.p_value)
    assert ab.ci_low == pytest.approx(-ba.ci_high)


def test_paired_summary_one_seed_and_constant_differences():
    one = stats.paired_summary([0.8], [0.7])
    assert one.n == 1 and one.mean_diff == pytest.approx(0.1)
    assert all(math.isnan(v) for v in (one.std_diff, one.ci_low, one.ci_high, one.p_value))
    const = stats.paired_summary([2.0, 3.0], [1.0, 2.0])
    assert (const.ci_low, const.ci_high) == (1.0, 1.0)
    assert math.isnan(const.p_value)  # the t-test is undefined without spread


def test_paired_summary_rejects_unpaired_input():
    with pytest.raises(ValueError, match="same non-zero length"):
        stats.paired_summary([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="confidence"):
        stats.paired_summary([1.0, 2.0], [1.0, 1.0], confidence=95)


def test_mean_std_and_median_timings():
    assert stats.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    mean, std = stats.mean_std([0.5])
    assert mean == 0.5 and math.isnan(std)
    med = stats.median_timings([
        {"lcc_refresh_s": 1.0, "lcc_graph_s": 0.5},
        {"lcc_refresh_s": 4.0, "lcc_graph_s": 0.1},
        {"lcc_refresh_s": 2.0},
    ])
    assert med["lcc_refresh_s"] == 2.0
    assert med["lcc_graph_s"] == pytest.approx(0.3)
    assert math.isnan(med["lcc_index_s"])
    assert list(med) == [history_key(k) for k in TIMING_KEYS]


def test_topk_accuracy_known_answer():
    proba = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6], [0.4, 0.4, 0.2]])
    y = np.array([2, 0, 1, 1])
    assert stats.topk_accuracy(proba, y, 1) == 0.25  # row 1 only; row 3 tie -> class 0
    assert stats.topk_accuracy(proba, y, 2) == 0.75  # rows 0, 1, 3
    assert stats.topk_accuracy(proba, y, 5) == 1.0
    with pytest.raises(ValueError, match="one label per row"):
        stats.topk_accuracy(proba, y[:2])


def test_finetune_parsing():
    assert parse_finetune("head") == ("head", None)
    assert parse_finetune("last-blocks:3") == ("last-blocks", 3)
    for bad in ("last-blocks:0", "last-blocks:x", "partial"):
        with pytest.raises(ValueError, match="finetune"):
            parse_finetune(bad)


# --------------------------------------------------------------------------- summaries


def _fake_run(method, seed, top1, top5, fit_s, refreshes=()):
    return {"method": method, "seed": seed, "top1": top1, "top5": top5, "fit_s": fit_s,
            "epoch_s": fit_s / 2, "peak_rss_mb": 100.0, "rss_increase_mb": 5.0,
            "cuda_peak_mb": None, "memory_method": "VmHWM", "refreshes": list(refreshes),
            "history": {"test_acc": [top1 / 2, top1]}}


def test_summarize_and_markdown_with_one_seed(tmp_path):
    refresh = {"epoch": 2, "lcc_misclustered": 0.3, "lcc_uncovered_classes": 1.0,
               "lcc_largest_cluster": 0.2, "lcc_n_clusters": 9.0, "lcc_refresh_s": 1.5,
               "lcc_latents_s": 0.5, "lcc_graph_s": 0.4, "lcc_communities_s": 0.4,
               "lcc_assign_s": 0.1, "lcc_index_s": 0.1}
    runs = [_fake_run("ce", 0, 0.70, 0.90, 10.0), _fake_run("lcc", 0, 0.72, 0.91, 15.0, [refresh])]
    summary = stats.summarize(runs, ["ce", "lcc"])
    (pair,) = summary["paired"]
    assert pair["top1"]["diffs"] == [pytest.approx(0.02)]
    assert pair["top1"]["p_value"] != pair["top1"]["p_value"]  # NaN with one seed
    assert summary["cost"]["methods"]["lcc"]["ratio_to_ce"] == pytest.approx(1.5)
    assert summary["refresh_timings"]["lcc"]["lcc_refresh_s"] == 1.5
    results = report.jsonable({
        "config": {"dataset": "toy", "backbone": "b", "image_size": 8, "finetune": "head",
                   "seeds": [0], "epochs": 2, "lr": 1e-3, "weight_decay": 1e-2,
                   "batch_size": 4, "command": "x"},
        "machine": {"device_name": "cpu", "cpus_usable": 1, "cpu_count": 1, "load_average": [0],
                    "torch": "t", "torch_threads": 1, "platform": "p", "git_commit": None},
        "data": {"n_train": 4, "n_test": 2, "n_classes": 2, "input_shape": [3]},
        "methods": ["ce", "lcc"], "runs": runs, "confidence": 0.95, "prepare_s": 1.0,
        "tuning": {"skipped": "no tuning here"}, "plots": [], **summary,
    })
    json.dumps(results, allow_nan=False)  # NaN became null
    md = report.render_markdown(results)
    assert "| lcc vs ce | top1 | 1 | 2.00 | [n/a, n/a] | n/a | n/a | 1/0/0 | 2.00 |" in md
    assert "Skipped: no tuning here" in md
    assert "| method | refreshes | latents | graph | communities | assign | index | total |" in md
    assert "| epoch | clusters | misclustered | uncovered classes | largest cluster |" in md
    # every statistic sklcc reports makes it into the table when the runs have it
    full = {**refresh, **{history_key(k): 1.0 for k in STAT_KEYS}}
    full_stats = stats.summarize([runs[0], _fake_run("lcc", 0, 0.7, 0.9, 1.0, [full])],
                                 ["ce", "lcc"])["refresh_stats"]
    assert set(full_stats["lcc"][0]) == {"epoch", *map(history_key, STAT_KEYS)}
    assert "AdamW lr 0.001" in md and "published grid" not in md  # no grid cells here
    # grid cells get the paper's layout: placement x weight rows, one column per k
    cells = ["lcc@w=0.01,k=5,layer=logits", "lcc@w=0.01,k=50,layer=logits",
             "lcc@w=0.0001,k=5,layer=logits"]
    grid_runs = [_fake_run("ce", s, 0.70 + s / 100, 0.9, 10.0) for s in (0, 1)]
    grid_runs += [_fake_run(m, s, 0.71 + s / 100 + i / 1000, 0.9, 12.0)
                  for i, m in enumerate(cells) for s in (0, 1)]
    grid = report.jsonable({**results, "methods": ["ce", *cells], "runs": grid_runs,
                            "config": {**results["config"], "optimizer": "sgd", "momentum": 0.9,
                                       "seeds": [0, 1]},
                            **stats.summarize(grid_runs, ["ce", *cells])})
    md = report.render_markdown(grid)
    assert "SGD (momentum 0.9) lr 0.001" in md
    assert "| placement | weight | k = 5 | k = 50 |" in md
    assert "| logits | 0.01 | 71.50<br>1.00 [1.00, 1.00], p n/a, n 2 | 71.60<br>1.10" in md
    assert "| logits | 0.0001 | 71.70<br>1.20 [1.20, 1.20], p n/a, n 2 | – |" in md
    report.plot_accuracy_curves(runs, ["ce", "lcc"], tmp_path / "acc.png")
    report.plot_refresh_diagnostics(summary["refresh_stats"], tmp_path / "diag.png")
    assert (tmp_path / "acc.png").stat().st_size > 0 and (tmp_path / "diag.png").stat().st_size > 0


# --------------------------------------------------------------------------- config, methods


def _config(*flags):
    argv = ["--out", "unused", *flags]
    return resolve_config(parse_args(argv), argv, script="cifar100.py")


def test_flags_name_image_size_and_louvain_resolution_apart():
    cfg = _config("--image-size", "64", "--louvain-resolution", "2",
                  "--louvain-resolution-sweep", "4", "8", "--methods", "lcc")
    assert cfg["image_size"] == 64 and cfg["louvain_resolution"] == 2.0
    assert cfg["methods"] == ["ce", "lcc", "lcc@louvain_resolution=4",
                              "lcc@louvain_resolution=8"]
    assert cfg["command"].endswith("cifar100.py --out unused --image-size 64 "
                                   "--louvain-resolution 2 --louvain-resolution-sweep 4 8 "
                                   "--methods lcc")
    for old in ("--resolution", "--resolution-louvain", "--resolution-sweep"):
        with pytest.raises(SystemExit):
            parse_args(["--out", "x", old, "2"])
    with pytest.raises(SystemExit):
        _config("--louvain-resolution-sweep", "0")


def test_clustering_defaults_come_from_the_estimator():
    cfg = _config()
    signature = inspect.signature(LCCClassifier).parameters
    for name in ("cluster_sample_size", "cluster_n_components", "n_neighbors",
                 "louvain_resolution"):
        assert cfg[name] == signature[name].default, name
    # n_representatives='auto' is recorded as what it resolves to under the target
    assert signature["n_representatives"].default == "auto"
    assert cfg["n_representatives"] == 32 == _config("--n-representatives", "auto")[
        "n_representatives"]
    assert _config("--lcc-target", "knn-mean")["n_representatives"] is None
    assert _config("--n-representatives", "16")["n_representatives"] == 16
    assert _config("--n-representatives", "0")["n_representatives"] is None
    assert _config("--lcc-target", "knn-mean", "--n-representatives", "0")[
        "n_representatives"] is None
    with pytest.raises(SystemExit):
        _config("--lcc-target", "knn-mean", "--n-representatives", "16")  # contradictory
    with pytest.raises(SystemExit):
        _config("--n-representatives", "many")
    assert cfg["center_weight"] == inspect.signature(CenterLossClassifier).parameters[
        "center_weight"].default
    assert cfg["image_size"] == 128 and _config("--dataset", "digits")["image_size"] == 32
    zero = _config("--cluster-sample-size", "0", "--cluster-n-components", "0")
    assert zero["cluster_sample_size"] is None and zero["cluster_n_components"] is None


def test_each_method_is_an_sklcc_estimator():
    cfg = _config("--louvain-resolution-sweep", "3", "--hidden", "16")
    data = {"n_classes": 3, "in_features": 5}
    nets = {m: make_estimator(m, cfg, data, seed=4) for m in cfg["methods"]}
    assert type(nets["ce"]) is LatentPenaltyClassifier
    assert type(nets["lcc"]) is LCCClassifier and type(nets["center"]) is CenterLossClassifier
    assert nets["center"].center_layer == HIDDEN_LAYER == nets["lcc"].lcc_layers[0]
    assert nets["lcc"].louvain_resolution == cfg["louvain_resolution"]
    assert nets["lcc@louvain_resolution=3"].louvain_resolution == 3.0
    assert all(net.random_state == 4 for net in nets.values())
    with pytest.raises(ValueError, match="unknown method"):
        make_estimator("lcc@res=2", cfg, data, seed=0)


def test_published_preset_sets_the_recipe_and_the_grid():
    cfg = _config("--preset", "published")
    assert (cfg["dataset"], cfg["finetune"], cfg["image_size"], cfg["epochs"]) == (
        "cifar100", "full", 224, 50)
    assert (cfg["optimizer"], cfg["lr"], cfg["momentum"], cfg["batch_size"]) == (
        "sgd", 0.1, 0.9, 256)
    assert cfg["grad_clip"] == 1.0 and cfg["train_fraction"] == 0.8 and cfg["seeds"] == [0, 1, 2]
    assert (cfg["lcc_warmup"], cfg["lcc_interval"]) == (1, 1)
    # the plain lcc options stay today's defaults: the grid cells carry the published ones
    assert (cfg["lcc_target"], cfg["n_representatives"]) == ("nearest", 32)
    assert (cfg["cluster_sample_size"], cfg["cluster_n_components"]) == (5000, 64)
    grid = [m for m in cfg["methods"] if m.startswith("lcc@w=")]
    assert cfg["methods"][0] == "ce" and len(grid) == 12
    assert "lcc@w=0.0001,k=500,layer=last-stage" in grid
    # flags given on the command line win over the preset
    assert _config("--preset", "published", "--epochs", "3", "--grid-k", "5")["epochs"] == 3
    assert len(_config("--preset", "published", "--grid-k", "5")["methods"]) == 1 + 4
    with pytest.raises(SystemExit):
        _config("--grid-weights", "0.01")  # the grid needs all three lists


def test_grid_cells_build_the_published_lcc():
    cfg = _config("--preset", "published", "--finetune", "head", "--hidden", "16",
                  "--methods", "ce", "lcc", "--knn-algorithm", "hnsw")
    data = {"n_classes": 3, "in_features": 5}
    net = make_estimator("lcc@w=0.0001,k=50,layer=logits", cfg, data, seed=1)
    assert (net.lcc_weight, net.n_neighbors, net.lcc_layers) == (1e-4, 50, ["head.out"])
    assert net.lcc_target == "knn-mean" and net.lcc_target_k is None  # k shared
    assert net.cluster_sample_size is None and net.n_representatives is None
    # the published exact graph, whatever --knn-algorithm says (it sets today's defaults)
    assert net.cluster_n_components is None and net.knn_algorithm == "brute"
    # beside the cells, lcc is today's defaults: the 5b comparison in one recipe
    plain = make_estimator("lcc", cfg, data, seed=1)
    assert (plain.lcc_target, plain.n_representatives, plain.n_neighbors) == ("nearest", 32, 10)
    assert (plain.cluster_sample_size, plain.cluster_n_components) == (5000, 64)
    assert plain.lcc_layers == [HIDDEN_LAYER] and plain.knn_algorithm == "hnsw"
    assert make_estimator("lcc@w=0.01,k=5,layer=last-stage", cfg, data, seed=1).lcc_layers == [
        HIDDEN_LAYER]  # no backbone block trains in the head regime
    assert type(net.optimizer) is type and net.optimizer.__name__ == "SGD"
    assert dict(net.callbacks)["grad_clip"].gradient_clip_value == 1.0


@pytest.fixture(scope="module")
def digits_head():
    X, y = load_digits(return_X_y=True)
    return (X[:300] / 16).astype(np.float32), y[:300], {"n_classes": 10, "in_features": 64}


def test_ce_and_lcc_are_paired_within_a_seed(digits_head):
    # The benchmark's paired differences rest on this: with one seed, ce and lcc start from
    # the same weights and see the same batches, so they differ by the LCC term alone.
    X, y, data = digits_head
    cfg = _config("--epochs", "2", "--lcc-warmup", "1", "--hidden", "16", "--batch-size", "128",
                  "--cluster-n-components", "0")
    ce = make_estimator("ce", cfg, data, seed=3).fit(X, y)
    zero = make_estimator("lcc", cfg, data, seed=3, params={"lcc_weight": 0.0}).fit(X, y)
    lcc = make_estimator("lcc", cfg, data, seed=3, params={"lcc_weight": 1.0}).fit(X, y)
    assert len(zero.history[:, history_key("refresh_s")]) == 1  # the refresh ran ...
    np.testing.assert_array_equal(ce.predict_proba(X), zero.predict_proba(X))  # ... drew nothing
    assert ce.history[:, "train_loss"] == zero.history[:, "train_loss"]
    assert ce.history[0, "train_loss"] == lcc.history[0, "train_loss"]  # warm-up epoch
    assert lcc.history[-1, "train_lcc"] > 0


# --------------------------------------------------------------------------- quick run


@pytest.mark.slow
def test_quick_run_on_digits(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "SKLCC_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / "cifar100.py"), "--dataset", "digits", "--quick",
         "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name in ("results.json", "results.md", "accuracy_per_epoch.png",
                 "misclustered_per_refresh.png", "cluster_diagnostics.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "accuracy_per_epoch.png").read_bytes()[:4] == b"\x89PNG"

    results = json.loads((out / "results.json").read_text())
    cfg, methods, runs = results["config"], results["methods"], results["runs"]
    assert cfg["quick"] and cfg["image_size"] == 32 and len(cfg["seeds"]) >= 2
    expected = {"ce", "lcc", "center"}
    tuning = results["tuning"]
    if "skipped" not in tuning:
        expected |= {"lcc-tuned", "ce-tuned"}
        assert tuning["n_fit"] + tuning["n_valid"] == results["data"]["n_train"]
        for t in tuning["methods"].values():
            assert len(t["trials"]) == cfg["tune_trials"] and 0 <= t["best_valid_score"] <= 1
    assert set(methods) == expected
    assert len(runs) == len(methods) * len(cfg["seeds"])
    assert {"platform", "cpu_count", "torch", "device_name"} <= set(results["machine"])

    by = {(r["method"], r["seed"]): r for r in runs}
    for r in runs:
        assert 0 <= r["top1"] <= r["top5"] <= 1
        assert r["fit_s"] > 0 and r["peak_rss_mb"] > 0
        assert len(r["history"]["test_acc"]) == cfg["epochs"]
        assert all(0 <= a <= 1 for a in r["history"]["test_acc"])
    for m in methods:
        s = results["summary"][m]
        assert s["top1_mean"] == pytest.approx(np.mean([by[m, k]["top1"] for k in cfg["seeds"]]))
    for pair in results["paired"]:
        m, base = pair["method"], pair["baseline"]
        for metric in ("top1", "top5"):
            diffs = [by[m, k][metric] - by[base, k][metric] for k in pair["seeds"]]
            assert pair[metric]["diffs"] == pytest.approx(diffs)
            assert pair[metric]["mean_diff"] == pytest.approx(np.mean(diffs))
            lo, hi = pair[metric]["ci_low"], pair[metric]["ci_high"]
            assert lo is None or lo <= pair[metric]["mean_diff"] <= hi
    cost = results["cost"]["methods"]["lcc"]
    assert cost["ratios_to_ce"] == pytest.approx([by["lcc", k]["fit_s"] / by["ce", k]["fit_s"]
                                                  for k in cfg["seeds"]])
    assert cost["ratio_to_ce"] == pytest.approx(
        sum(by["lcc", k]["fit_s"] for k in cfg["seeds"])
        / sum(by["ce", k]["fit_s"] for k in cfg["seeds"]))

    # ce and lcc share seed, weights and batches: identical until LCC's first refresh.
    for k in cfg["seeds"]:
        ce, lcc = by["ce", k]["history"], by["lcc", k]["history"]
        warm = cfg["lcc_warmup"]
        assert ce["train_loss"][:warm] == pytest.approx(lcc["train_loss"][:warm], abs=1e-6)
        assert lcc["train_lcc"][warm - 1] == 0 and max(lcc["train_lcc"][warm:]) > 0
    refreshes = by["lcc", cfg["seeds"][0]]["refreshes"]
    assert len(refreshes) == cfg["epochs"] - cfg["lcc_warmup"]
    for f in refreshes:
        assert 0 <= f["lcc_misclustered"] <= 1 and f["lcc_n_clusters"] >= 1
        assert 0 < f["lcc_largest_cluster"] <= 1 and f["lcc_refresh_s"] > 0

    md = (out / "results.md").read_text()
    for heading in ("Test accuracy per seed", "Paired difference", "Cost",
                    "Refresh time split", "Clustering at each refresh"):
        assert heading in md


@pytest.mark.slow
def test_published_preset_smoke_run_on_digits_resumes(tmp_path):
    # The preset, shrunk to digits: one trainable backbone block at 32 px, random weights,
    # two epochs, k = 5, one seed; the second call finds every run on disk.
    out = tmp_path / "out"
    env = {**os.environ, "SKLCC_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    cmd = [sys.executable, str(BENCH / "cifar100.py"), "--preset", "published", "--dataset",
           "digits", "--finetune", "last-blocks:1", "--random-weights", "--image-size", "32",
           "--epochs", "2", "--seeds", "0", "--grid-k", "5", "--train-subset", "600",
           "--test-subset", "300", "--threads", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert len(results["methods"]) == 5 and len(results["runs"]) == 5
    refreshes = {r["method"]: r["refreshes"] for r in results["runs"]}
    cell = refreshes["lcc@w=0.01,k=5,layer=last-stage"]
    assert len(cell) == 1 and cell[0]["lcc_louvain_backend"] in ("networkit", "networkx")
    assert refreshes["ce"] == []
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert again.returncode == 0 and "resuming: 5 finished runs" in again.stdout + again.stderr
    assert json.loads((out / "results.json").read_text())["runs"] == results["runs"]


@pytest.mark.slow
def test_clustering_agreement_on_digits(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "SKLCC_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / "clustering_agreement.py"), "--dataset", "digits",
         "--epochs", "2", "--cluster-sample-sizes", "400", "0", "--cluster-n-components", "0",
         "16", "--knn-algorithms", "auto", "ivf", "--seeds", "1", "2", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((out / "clustering_agreement.json").read_text())
    rows = report["rows"]
    configs = [f"sample={m} pca={c}{e}" for m in (400, "all") for c in ("none", 16)
               for e in ("", " knn=ivf")]
    assert [(r["config"], r["seed"]) for r in rows] == [
        (c, s) for c in ["full", *configs] for s in (1, 2)
    ]
    assert {r["knn_algorithm"] for r in rows if r["config"].endswith("ivf")} == {"ivf"}
    assert {r["knn_algorithm"] for r in rows if not r["config"].endswith("ivf")} != {"ivf"}
    # the reference is the first full clustering: it agrees with itself exactly
    assert rows[0]["ari_vs_full"] == 1.0 and rows[0]["flag_agreement_vs_full"] == 1.0
    for r in rows:
        assert -1.0 <= r["ari_vs_full"] <= 1.0 and 0.0 <= r["flag_agreement_vs_full"] <= 1.0
        assert 0.0 <= r["misclustered"] <= 1.0 and r["n_clusters"] >= 1
    assert report["n_train"] > 400  # the subsample is a real subsample
    assert "| full | 1 |" in (out / "clustering_agreement.md").read_text()


def test_knn_engines_reports_times_and_recall(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "knn_engines.py"), "--n", "600", "--d", "8", "--k", "5",
         "--engines", "brute", "hnsw", "ivf", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (row,) = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert "kd_tree" not in row and row["auto"] == "brute"
    assert row["brute"]["seconds"] > 0 and "recall" not in row["brute"]
    # 600 rows make 15 IVF cells, all of them searched: its graph is the exact one.
    assert row["ivf"]["recall"] == 1.0 and row["ivf"]["edges"] == row["brute"]["edges"]
    assert 0.9 < row["hnsw"]["recall"] <= 1.0
    assert "| 600 | 8 | 5 |" in (tmp_path / "results.md").read_text()


# --------------------------------------------------------------------------- the confirmation


def test_wilcoxon_known_answers():
    # ten positive differences: the exact two-sided p is 2 / 2**10
    s = stats.paired_summary(np.arange(1, 11) + 5.0, np.full(10, 5.0))
    assert s.wilcoxon_p == pytest.approx(2 / 1024)
    # signs balanced around zero: far from significant
    s = stats.paired_summary([1.0, -1.0, 2.0, -2.0, 3.0, -3.0], [0.0] * 6)
    assert s.wilcoxon_p == pytest.approx(1.0) and s.mean_diff == 0
    assert math.isnan(stats.paired_summary([1.0, 2.0], [1.0, 2.0]).wilcoxon_p)


def test_preregistered_verdict_rule():
    rule = stats.verdict
    assert rule({"ci_low": 0.0001, "ci_high": 0.011}, 0.003) == "confirmed"
    assert rule({"ci_low": 0.0001, "ci_high": 0.0029}, 0.003) == "confirmed, below min_effect"
    assert rule({"ci_low": -0.001, "ci_high": 0.0029}, 0.003) == "refuted"
    assert rule({"ci_low": -0.001, "ci_high": 0.003}, 0.003) == "inconclusive"
    assert rule({"ci_low": -0.01, "ci_high": -0.0001}, 0.003) == "refuted (harm)"
    assert rule({"ci_low": None, "ci_high": None}, 0.003) == "undefined"
    assert rule(stats.paired_summary([0.81, 0.82], [0.80, 0.80]), 0.003) in (
        "confirmed", "inconclusive")


def test_control_arms_are_paired_and_additivity_is_per_seed():
    runs = []
    for s in range(3):
        base = 0.70 + s / 100
        runs += [_fake_run("ce", s, base, 0.9, 10.0), _fake_run("lcc", s, base + 0.01, 0.9, 12.0),
                 _fake_run("ce+ls", s, base + 0.004, 0.9, 10.0),
                 _fake_run("lcc+ls", s, base + 0.004 + 0.002 * s, 0.9, 12.0)]
    methods = ["ce", "lcc", "ce+ls", "lcc+ls"]
    out = stats.summarize(runs, methods)
    pairs = {(p["method"], p["baseline"]): p for p in out["paired"]}
    assert set(pairs) == set(stats.comparison_pairs(methods))
    assert pairs["lcc", "ce+ls"]["top1"]["mean_diff"] == pytest.approx(0.006)
    # LCC's gain with smoothing (0, 0.002, 0.004) minus without (0.01 each seed)
    add = out["additivity"]["top1"]
    assert add["diffs"] == pytest.approx([-0.01, -0.008, -0.006])
    assert stats.summarize(runs[:2], ["ce", "lcc"])["additivity"] is None


def test_label_smoothing_arms_differ_from_their_base_by_the_criterion_only():
    cfg = _config("--methods", "ce", "lcc", "ce+ls", "lcc+ls", "--hidden", "16",
                  "--knn-algorithm", "brute", "--louvain-backend", "networkx")
    data = {"n_classes": 3, "in_features": 5}
    nets = {m: make_estimator(m, cfg, data, seed=2) for m in cfg["methods"]}
    assert "criterion__label_smoothing" not in nets["ce"].get_params()
    for plain, smoothed in (("ce", "ce+ls"), ("lcc", "lcc+ls")):
        a, b = nets[plain].get_params(deep=False), nets[smoothed].get_params(deep=False)
        assert b.pop("criterion__label_smoothing") == 0.1
        assert type(nets[plain]) is type(nets[smoothed])
        assert {k for k in a if k not in ("callbacks", "_params_to_validate")
                and repr(a[k]) != repr(b[k])} == set()
    assert (nets["lcc"].knn_algorithm, nets["lcc"].louvain_backend) == ("brute", "networkx")
    assert _config("--label-smoothing", "0.2")["label_smoothing"] == 0.2
    with pytest.raises(SystemExit):
        _config("--label-smoothing", "1")


def test_label_smoothing_changes_the_loss(digits_head):
    X, y, data = digits_head
    cfg = _config("--epochs", "1", "--hidden", "16", "--batch-size", "128", "--methods", "ce",
                  "ce+ls")
    ce = make_estimator("ce", cfg, data, seed=0).fit(X, y)
    ls = make_estimator("ce+ls", cfg, data, seed=0).fit(X, y)
    assert ls.criterion_.label_smoothing == 0.1 and ce.criterion_.label_smoothing == 0.0
    assert ls.history[0, "train_loss"] != ce.history[0, "train_loss"]


def test_check_poolable_names_the_runs_that_differ():
    from lccbench.provenance import check_poolable, commits_of

    def run(seed, knn, weight="0.1", commit="abc"):
        return {"method": "lcc", "seed": seed, "refreshes": [],
                "provenance": {"git_commit": commit, "git_dirty": False,
                               "method_config": {"class": "L", "lcc_weight": weight},
                               "engines": {"knn_algorithm": [knn]}}}

    same = [run(0, "brute"), run(1, "brute", commit="def")]
    assert check_poolable(same) == []
    assert commits_of(same) == {"abc": ["lcc seed 0"], "def": ["lcc seed 1"]}
    mixed = [run(0, "brute"), run(1, "hnsw"), run(2, "brute", weight="0.03")]
    expected = r"seed 1: lcc_weight=0.1, knn_algorithm=\['hnsw'\]"
    with pytest.raises(ValueError, match=expected) as err:
        check_poolable(mixed)
    assert "--allow-mixed-runs" in str(err.value) and "seed 2: lcc_weight=0.03" in str(err.value)
    (line,) = check_poolable(mixed, allow_mixed=True)
    assert line.startswith("lcc: seed 0: ")
    # a library version that moved between sessions counts too
    newer = run(1, "brute")
    newer["provenance"]["versions"] = {"faiss-cpu": "1.9.0"}
    older = run(0, "brute")
    older["provenance"]["versions"] = {"faiss-cpu": "1.8.0"}
    with pytest.raises(ValueError, match=r"seed 1: faiss-cpu=1.9.0"):
        check_poolable([older, newer])
    # older run files: no configuration recorded, engines read from the refreshes
    old = [{"method": "lcc", "seed": s, "refreshes": [{"lcc_knn_algorithm": k}]}
           for s, k in ((0, "brute"), (1, "hnsw"))]
    with pytest.raises(ValueError, match="seed 1: knn_algorithm"):
        check_poolable(old)


def test_cpu_share_sees_another_process():
    from lccbench.provenance import CpuShare

    if not Path("/proc/stat").exists():
        pytest.skip("needs /proc/stat")
    with CpuShare() as quiet:
        sum(range(2_000_000))
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with CpuShare() as loaded:
            import time
            time.sleep(1.0)
    finally:
        busy.kill()
    assert loaded.other_share > 0.2 * (1 / max(1, os.cpu_count() or 1)) * 2
    assert quiet.load_average_start is not None


@pytest.mark.slow
def test_confirmation_arms_run_record_provenance_and_refuse_mixed_runs(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "SKLCC_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    cmd = [sys.executable, str(BENCH / "cifar100.py"), "--dataset", "digits", "--quick",
           "--methods", "ce", "lcc", "ce+ls", "lcc+ls", "--epochs", "2", "--seeds", "0", "1",
           "--train-subset", "600", "--test-subset", "300", "--knn-algorithm", "brute",
           "--louvain-backend", "networkx", "--min-effect", "0.3", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert results["methods"] == ["ce", "lcc", "ce+ls", "lcc+ls"] and len(results["runs"]) == 8
    assert results["additivity"]["top1"]["n"] == 2 and results["mixed_runs"] == []
    assert results["verdict"]["verdict"] in ("confirmed", "confirmed, below min_effect",
                                             "refuted", "refuted (harm)", "inconclusive")
    import sklcc

    for r in results["runs"]:
        prov = r["provenance"]
        assert prov["sklcc_path"] == str(Path(sklcc.__file__).resolve().parent)
        key = (prov["git_commit"] or "not recorded") + (
            " (uncommitted changes)" if prov["git_dirty"] else "")
        assert f"{r['method']} seed {r['seed']}" in results["commits"][key]
        assert prov["versions"]["torch"] and prov["load_average_start"] is not None
        assert prov["method_config"]["criterion__label_smoothing" if "+ls" in r["method"]
                                     else "criterion"]
        if r["method"].startswith("lcc"):
            assert prov["engines"] == {"louvain_backend": ["networkx"],
                                       "knn_algorithm": ["brute"]}
        else:
            assert prov["engines"] == {}
    assert (out / "runs" / "lcc+ls__seed1.json").is_file()
    md = (out / "results.md").read_text()
    assert "## Provenance" in md and "Pre-registered verdict" in md and "add up?" in md

    # a run that ran another engine is refused, by name, unless told otherwise
    path = out / "runs" / "lcc__seed1.json"
    run = json.loads(path.read_text())
    run["provenance"]["engines"]["knn_algorithm"] = ["hnsw"]
    path.write_text(json.dumps(run))
    refused = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert refused.returncode != 0
    assert "lcc: seed 0: knn_algorithm=['brute']; seed 1: knn_algorithm=['hnsw']" in (
        refused.stderr)
    mixed = subprocess.run(cmd + ["--allow-mixed-runs"], capture_output=True, text=True, env=env,
                           timeout=600, cwd=REPO)
    assert mixed.returncode == 0, mixed.stderr[-4000:]
    assert "Runs of one method differ" in (out / "results.md").read_text()


def test_default_cost_smoke(tmp_path):
    # benchmarks/default_cost.py on tiny sizes: both fits, the ratio and both splits.
    import default_cost

    results = default_cost.main(["--n-samples", "500", "--n-features", "16", "--hidden", "16",
                                 "--epochs", "3", "--batch-size", "64", "--pairs", "1",
                                 "--out", str(tmp_path)])
    s = results["summary"]
    assert s["ratio_median"] > 0 and s["refreshes_per_fit"] == 2
    assert set(s["refresh"]) == set(default_cost.REFRESH_SPLIT)
    assert 0 < s["batch"]["penalty_batch_s"] < s["batch"]["lcc_batch_s"]
    assert results["pairs"][0]["lcc_latents"] == "train"  # no dropout, no batch-norm
    assert json.loads((tmp_path / "default_cost.json").read_text())["regime"] == "mlp"
    assert "Fit-time ratio LCC / plain" in (tmp_path / "default_cost.md").read_text()


def test_default_cost_prices_a_changed_default(tmp_path, capsys):
    # --set changes an LCCClassifier parameter of the LCC fits only, and the report says so.
    import default_cost

    results = default_cost.main(["--n-samples", "400", "--n-features", "8", "--hidden", "8",
                                 "--epochs", "4", "--batch-size", "64", "--pairs", "1",
                                 "--set", "lcc_interval=2", "--set", "knn_algorithm=kd_tree",
                                 "--out", str(tmp_path)])
    assert results["lcc_overrides"] == {"lcc_interval": 2, "knn_algorithm": "kd_tree"}
    assert results["summary"]["refreshes_per_fit"] == 2  # epochs 2 and 4, not 2, 3 and 4
    assert results["pairs"][0]["engines"]["knn_algorithm"] == "kd_tree"
    assert "changed from the defaults: lcc_interval=2, knn_algorithm='kd_tree'" in (
        tmp_path / "default_cost.md").read_text()
    for bad, message in [("lr=0.1", "not one of LCCClassifier's own parameters"),
                         ("random_state=3", "not one of LCCClassifier's own parameters"),
                         ("lcc_interval", "expected NAME=VALUE")]:
        with pytest.raises(SystemExit):
            default_cost.parse(["--set", bad, "--out", str(tmp_path)])
        assert message in capsys.readouterr().err


def test_quiet_time_ratio_keeps_only_seeds_with_both_runs_quiet():
    def run(method, seed, fit_s, share):
        r = _fake_run(method, seed, 0.7, 0.9, fit_s)
        r["provenance"] = {"other_cpu_share": share}
        return r

    runs = [run("ce", 0, 100.0, 0.01), run("lcc", 0, 125.0, 0.0),   # quiet: 1.25
            run("ce", 1, 300.0, 0.30), run("lcc", 1, 120.0, 0.0),   # ce slowed by another job
            run("ce", 2, 100.0, 0.0), run("lcc", 2, 115.0, 0.049),  # quiet: 1.15
            run("ce", 3, 100.0, 0.0), run("lcc", 3, 200.0, 0.05)]   # lcc at the threshold
    q = stats.quiet_time_ratio(runs, "lcc")
    assert q["seeds"] == [0, 2] and q["n_pairs"] == 2
    assert q["ratio"] == pytest.approx(240 / 200) and q["ratios"] == pytest.approx([1.25, 1.15])
    # runs without provenance never count as quiet
    assert stats.quiet_time_ratio([_fake_run("ce", 0, 1, 1, 1.0), _fake_run("lcc", 0, 1, 1, 2.0)],
                                  "lcc")["n_pairs"] == 0
    summary = stats.summarize(runs, ["ce", "lcc"])
    assert summary["cost"]["quiet"]["lcc"]["seeds"] == [0, 2]
    assert summary["cost"]["methods"]["lcc"]["ratio_to_ce"] == pytest.approx(560 / 600)
