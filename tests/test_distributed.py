"""LCC under data parallelism: two CPU processes (gloo) launched by torchrun."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import accelerate  # in the test extra: these tests run, never skip
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sklcc import LCCClassifier
from sklcc.base import FitState
from sklcc.distributed import DistributedLCCClassifier, states_digest
from sklcc.latents import LatentRecorder, collect_latents
from sklcc.refresh import refresh_clusters

ROOT = Path(__file__).resolve().parents[1]
N_RANKS = 2


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU())
        self.out = torch.nn.Linear(32, 10)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


def _torchrun(script: Path, *args: str, timeout: float = 240):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    result = subprocess.run(
        [torchrun, "--standalone", f"--nproc_per_node={N_RANKS}", str(script), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result.stdout, time.perf_counter() - start


@pytest.mark.slow  # two torchrun ranks: the slow lane (CI runs it)
def test_two_ranks(tmp_path):
    """One launch (a few seconds of start-up per rank), every check on its output.

    One test rather than a module fixture: under pytest-xdist each worker would launch its
    own pair of ranks.
    """
    stdout, seconds = _torchrun(ROOT / "tests" / "distributed_worker.py", str(tmp_path))
    print(f"two-rank run: {seconds:.1f} s")
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(N_RANKS)]
    histories = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(N_RANKS)]
    _check_example_output(stdout, ranks)
    _check_flags_equal_single_process_refresh(ranks)
    _check_batches_carry_their_positions(ranks)
    _check_history_and_checkpoint(histories, tmp_path)


def _check_example_output(stdout, ranks):
    lines = stdout.strip().splitlines()
    refreshes = [line for line in lines if line.startswith("refresh at epoch")]
    assert len(refreshes) == int(ranks[0]["n_refreshes"]) == 3  # epochs 3, 5, 7
    assert "MULTI_CPU" in lines[0]
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", stdout).group(1))
    assert accuracy > 0.8  # chance is 0.1
    assert "ranks agree" in lines[-1] and "on 2 ranks" in lines[-1]


def _check_flags_equal_single_process_refresh(ranks):
    rng = np.random.default_rng(0)  # the example's random_state: one generator, every refresh
    for k in range(int(ranks[0]["n_refreshes"])):
        Z, y = ranks[0][f"Z_{k}"], ranks[0][f"y_{k}"]
        for rank in ranks[1:]:
            np.testing.assert_array_equal(rank[f"Z_{k}"], Z)
            np.testing.assert_array_equal(rank[f"y_{k}"], y)
        # Gathered by position, the shards are the whole split's latents in dataset order.
        np.testing.assert_allclose(Z, ranks[0][f"reference_{k}"], rtol=1e-5, atol=1e-6)
        state = refresh_clusters(Z, y, 10, random_state=rng, n_neighbors=10)
        for rank in ranks:
            np.testing.assert_array_equal(rank[f"misclustered_{k}"], state.misclustered)


def _check_batches_carry_their_positions(ranks):
    n_train = len(ranks[0]["y_0"])
    for rank in ranks:
        assert rank["misaligned"] == 0 and rank["aligned"] > 0
        first = rank["first_batches"]
        assert len({tuple(row) for row in first}) > 1  # shuffled differently every epoch
    # One epoch's shards (padded to equal size with repeated samples) cover the split.
    seen = np.unique(np.concatenate([rank["seen_positions"] for rank in ranks]))
    np.testing.assert_array_equal(seen, np.arange(n_train))
    assert sum(int(rank["seen"][-1]) for rank in ranks) >= n_train


def _check_history_and_checkpoint(histories, out):
    assert all(h == histories[0] for h in histories[1:])
    assert len(histories[0]) == 8 and "lcc_n_clusters" in histories[0][2]
    # Saved unwrapped (no DDP "module." prefix): loads into the plain network.
    state = torch.load(out / "checkpoint" / "params.pt", weights_only=True)
    assert set(state) == {"hidden.0.weight", "hidden.0.bias", "out.weight", "out.bias"}


def test_one_process_trains_as_lcc_classifier():
    X, y = load_digits(return_X_y=True)
    X, y = (X[:600] / 16).astype(np.float32), y[:600]
    params = dict(lcc_layers=["hidden"], max_epochs=4, lr=0.1, batch_size=64, lcc_warmup=1,
                  lcc_interval=1, random_state=0, verbose=0)
    plain = LCCClassifier(MLP, **params).fit(X, y)
    accelerator = accelerate.Accelerator(cpu=True)
    dist = DistributedLCCClassifier(MLP, accelerator=accelerator, **params).fit(X, y)
    for key in ("train_loss", "valid_loss", "lcc_misclustered", "lcc_n_clusters"):
        np.testing.assert_allclose(dist.history[:, key], plain.history[:, key], rtol=1e-5)
    assert states_digest(dist.lcc_states_) == states_digest(plain.lcc_states_)
    np.testing.assert_array_equal(dist.predict(X), plain.predict(X))
    # AccelerateMixin re-implements initialize: every LCC attribute must still be set.
    assert {"lcc_rng_", "lcc_states_", "lcc_layers_"} <= set(vars(dist))


def test_sharded_latent_pass_gives_the_single_process_latents(monkeypatch):
    # The several-process branch of training_latents (latent_pass over the prepared
    # iterator with positions, then gather_by_position), run in one process: it must give
    # collect_latents' arrays. The torchrun test covers real shards in the slow lane.
    X, y = load_digits(return_X_y=True)
    X, y = (X[:300] / 16).astype(np.float32), y[:300]
    net = DistributedLCCClassifier(MLP, accelerator=accelerate.Accelerator(cpu=True),
                                   lcc_layers=["hidden", "out:input"], max_epochs=1,
                                   lcc_warmup=5, batch_size=64, random_state=0, verbose=0)
    net.fit(X, y)
    # Shuffled positions: the gather must put the rows back in dataset order.
    dataset = torch.utils.data.Subset(net.get_dataset(X, y), np.random.default_rng(0)
                                      .permutation(len(X))[:250].tolist())
    with LatentRecorder(net.module_, net.lcc_layers_) as recorder:
        expected, expected_y = collect_latents(net, dataset, recorder)
        net.fit_state_ = FitState(recorder=recorder)
        monkeypatch.setattr(DistributedLCCClassifier, "_n_processes", property(lambda self: 2))
        got, got_y = net.training_latents(dataset)
    np.testing.assert_array_equal(got_y, expected_y)
    assert got_y.dtype == np.int64 and set(got) == set(expected)
    for layer in expected:
        np.testing.assert_array_equal(got[layer], expected[layer])


def test_import_does_not_need_accelerate():
    code = ("import sys, sklcc, sklcc.distributed; "
            "sys.exit('accelerate' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120).returncode == 0
