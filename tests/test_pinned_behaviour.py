"""A short seeded CPU fit's refresh statistics and predictions, pinned across refactors.

The expected values were computed at commit 07b69d0 (before issue 22's restructuring of
the refresh), with one torch thread. Every parameter that decides the result is passed
explicitly, so a change of a default elsewhere does not move these numbers: only a
change of what a step computes does. Three paths are pinned: the default chain on a
dataset smaller than the subsample, the subsample + projection + assignment chain, and
the published knn-mean target on the full clustering in the full latent space.

Counts and predictions are compared exactly; float statistics and losses are compared
exactly too (the same machine gives the same bits), except on another CPU where torch's
kernels may differ in the last bits: set ``SKLCC_PIN_RTOL`` then (e.g. ``1e-5``).

To regenerate after an *intended* change of behaviour: ``python
tests/test_pinned_behaviour.py`` prints the dictionaries to paste below.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sklcc import LCCClassifier
from sklcc.diagnostics import STAT_KEYS, history_key


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU())
        self.out = torch.nn.Linear(32, 10)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


#: Every parameter that decides a fit's numbers, written out (defaults at 07b69d0).
BASE = dict(module=MLP, lcc_layers=["hidden"], max_epochs=4, lr=0.1, batch_size=64,
            train_split=None, random_state=0, verbose=0, lcc_weight=0.5, n_neighbors=10,
            louvain_resolution=1.0, n_representatives=32, lcc_target="nearest",
            lcc_target_k=None, lcc_warmup=1, lcc_interval=1, lcc_latents="eval",
            cluster_sample_size=5000, cluster_n_components=64,
            louvain_backend="networkit", knn_algorithm="auto")

CASES = {
    "default": {},
    "subsample": dict(cluster_sample_size=200, cluster_n_components=16),
    "knn-mean-full": dict(lcc_target="knn-mean", n_representatives=None, lcc_target_k=5,
                          cluster_sample_size=None, cluster_n_components=None),
}


def _observe(params: dict) -> dict:
    X, y = load_digits(return_X_y=True)
    X, y = (X[:500] / 16).astype(np.float32), y[:500]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clf = LCCClassifier(**{**BASE, **params}).fit(X, y)
        proba = clf.predict_proba(X)
    finally:
        torch.set_num_threads(threads)
    keys = ["train_loss", "train_lcc"] + [history_key(k) for k in STAT_KEYS]
    return {
        "history": {k: [None if row.get(k) is None else float(row[k]) for row in clf.history]
                    for k in keys},
        "predict": clf.predict(X[:60]).tolist(),
        "proba_sum": [float(v) for v in proba.sum(axis=0)],
    }


EXPECTED = {'default': {'history': {'lcc_largest_cluster': [None, 0.124, 0.116, 0.164],
                         'lcc_misclustered': [None, 0.132, 0.14200000000000002,
                                              0.16400000000000003],
                         'lcc_modularity': [None, 0.7379953754100551, 0.7557713957759412,
                                            0.7737981145961335],
                         'lcc_n_clusters': [None, 10.0, 11.0, 10.0],
                         'lcc_n_representatives': [None, 314.0, 327.0, 302.0],
                         'lcc_no_target': [None, 0.0, 0.0, 0.0],
                         'lcc_uncovered_classes': [None, 0.0, 0.0, 0.0],
                         'train_lcc': [0.0, 0.07482449793815613, 0.0787536033987999,
                                       0.0857603496313095],
                         'train_loss': [2.310166513442993, 2.3020303382873535, 2.2641009464263915,
                                        2.2247567920684816]},
             'predict': [0, 1, 0, 3, 0, 3, 6, 3, 3, 1, 0, 1, 1, 3, 0, 5, 6, 3, 3, 3, 0, 1, 3, 3, 1,
                         5, 6, 1, 3, 3, 0, 1, 5, 1, 6, 3, 5, 1, 3, 5, 3, 5, 1, 9, 3, 3, 3, 1, 0, 0,
                         0, 0, 5, 3, 0, 0, 1, 1, 0, 3],
             'proba_sum': [51.79656219482422, 55.153533935546875, 47.499534606933594,
                           57.383968353271484, 43.44386291503906, 54.61111831665039,
                           50.68736267089844, 45.45198440551758, 47.71707534790039,
                           46.2550048828125]},
 'knn-mean-full': {'history': {'lcc_largest_cluster': [None, 0.124, 0.206, 0.168],
                               'lcc_misclustered': [None, 0.132, 0.22199999999999998,
                                                    0.17400000000000004],
                               'lcc_modularity': [None, 0.7379953754100551, 0.7565274168703191,
                                                  0.7709721380981224],
                               'lcc_n_clusters': [None, 10.0, 11.0, 11.0],
                               'lcc_n_representatives': [None, 434.0, 389.0, 413.0],
                               'lcc_no_target': [None, 0.0, 0.0, 0.0],
                               'lcc_uncovered_classes': [None, 0.0, 0.0, 0.0],
                               'train_lcc': [0.0, 0.06892408192157745, 0.09001661533117294,
                                             0.08807463949918747],
                               'train_loss': [2.310166513442993, 2.299280170440674,
                                              2.2706460704803466, 2.228830547332764]},
                   'predict': [0, 1, 1, 3, 5, 1, 5, 3, 3, 1, 0, 1, 1, 3, 0, 5, 0, 3, 3, 3, 5, 1, 3,
                               3, 1, 5, 6, 1, 3, 3, 0, 1, 5, 5, 0, 5, 5, 1, 5, 5, 3, 5, 1, 9, 3, 3,
                               5, 1, 0, 0, 0, 0, 9, 3, 0, 0, 1, 1, 0, 3],
                   'proba_sum': [50.96377182006836, 55.28135299682617, 46.06148910522461,
                                 56.11081314086914, 44.3994255065918, 56.90604019165039,
                                 48.90651321411133, 45.789207458496094, 46.53896713256836,
                                 49.042388916015625]},
 'subsample': {'history': {'lcc_largest_cluster': [None, 0.246, 0.21, 0.208],
                           'lcc_misclustered': [None, 0.42400000000000004, 0.276,
                                                0.32599999999999996],
                           'lcc_modularity': [None, 0.6651604474027005, 0.6713149028794807,
                                              0.6891941139740884],
                           'lcc_n_clusters': [None, 7.0, 8.0, 8.0],
                           'lcc_n_representatives': [None, 221.0, 256.0, 240.0],
                           'lcc_no_target': [None, 0.288, 0.188, 0.194],
                           'lcc_uncovered_classes': [None, 3.0, 2.0, 2.0],
                           'train_lcc': [0.0, 0.07727554589509963, 0.07475162291526795,
                                         0.0840190782546997],
                           'train_loss': [2.310166513442993, 2.3038638954162596, 2.2637513637542725,
                                          2.226202049255371]},
               'predict': [0, 1, 0, 3, 0, 1, 0, 0, 3, 1, 0, 1, 1, 3, 0, 5, 0, 3, 3, 3, 0, 1, 3, 3,
                           1, 5, 6, 1, 3, 3, 0, 1, 5, 1, 0, 5, 0, 1, 5, 5, 3, 5, 1, 9, 3, 3, 3, 1,
                           0, 0, 0, 0, 9, 3, 0, 0, 1, 1, 0, 3],
               'proba_sum': [52.8796501159668, 54.749752044677734, 47.10877990722656,
                             56.21748733520508, 43.03700637817383, 55.51279067993164,
                             50.94302749633789, 44.80979537963867, 47.2122688293457,
                             47.52942657470703]}}


def _same(got, want, rtol):
    if isinstance(want, list):
        return len(got) == len(want) and all(
            _same(g, w, rtol) for g, w in zip(got, want, strict=True))
    if isinstance(want, float) and rtol:
        return got == pytest.approx(want, rel=rtol, abs=1e-12)
    return got == want


@pytest.mark.parametrize("case", sorted(CASES))
def test_seeded_fit_is_pinned(case):
    rtol = float(os.environ.get("SKLCC_PIN_RTOL", 0))
    got, want = _observe(CASES[case]), EXPECTED[case]
    for key, values in want["history"].items():
        assert _same(got["history"][key], values, rtol), (case, key, got["history"][key])
    assert got["predict"] == want["predict"]
    assert _same(got["proba_sum"], want["proba_sum"], rtol), got["proba_sum"]


def _refresh_on_device() -> dict:
    """The torch ("device") path of the clustering, on the CPU: subsample, projection."""
    from sklcc.refresh import refresh_clusters

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 900)
    Z = (rng.normal(0, 3, (5, 24))[y] + rng.normal(size=(900, 24))).astype(np.float32)
    y[rng.random(900) < 0.1] = 0
    state = refresh_clusters(Z, y, 5, n_neighbors=10, louvain_resolution=1.0,
                             n_representatives=8, lcc_target="nearest", lcc_target_k=None,
                             cluster_sample_size=300, cluster_n_components=8,
                             louvain_backend="networkit", knn_algorithm="auto",
                             cluster_device="cpu", random_state=3)
    return {"labels": state.labels.tolist()[:120], "stats": state.stats}


EXPECTED_DEVICE = {
    "labels": [1, 3, 4, 2, 2, 0, 0, 0, 0, 1, 3, 1, 4, 3, 1, 3, 3, 4, 4, 1, 2, 1, 3, 0, 2, 1, 4, 0,
            3, 3, 1, 0, 0, 1, 0, 4, 0, 2, 4, 4, 4, 0, 0, 0, 0, 3, 4, 3, 2, 3, 3, 2, 4, 1, 1, 1,
            2, 3, 1, 3, 1, 3, 3, 2, 1, 0, 4, 3, 1, 4, 2, 2, 4, 4, 3, 1, 0, 1, 4, 2, 3, 4, 2, 2,
            3, 4, 4, 2, 3, 2, 2, 1, 2, 2, 3, 3, 0, 0, 2, 1, 4, 3, 2, 2, 3, 1, 0, 0, 3, 2, 4, 0,
            1, 4, 1, 3, 3, 2, 3, 0],
 'stats': {'largest_cluster': 0.21666666666666667,
           'misclustered': 0.07999999999999996,
           'modularity': 0.7992452207970017,
           'n_clusters': 5,
           'n_representatives': 40,
           'no_target': 0.0,
           'uncovered_classes': 0}}


def test_torch_clustering_path_is_pinned():
    assert _refresh_on_device() == EXPECTED_DEVICE


if __name__ == "__main__":
    import pprint

    pprint.pprint({case: _observe(params) for case, params in CASES.items()}, width=100,
                  compact=True)
    pprint.pprint(_refresh_on_device(), width=100, compact=True)
