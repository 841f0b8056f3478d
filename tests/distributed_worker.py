"""One rank of ``test_distributed.py``: runs ``examples/distributed.py`` with probes.

Launched by the test as ``torchrun --standalone --nproc_per_node 2 distributed_worker.py
OUT``. Every rank writes ``OUT/rank<r>.npz`` (the gathered latents, labels and flags of
every refresh, the latents of the same network computed without sharding, batch
alignment counts) and ``OUT/rank<r>.json`` (its history); rank 0's Checkpoint writes
``OUT/checkpoint``.
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback, Checkpoint

from sklcc.latents import LatentRecorder, unwrap_parallel

ROOT = Path(__file__).resolve().parents[1]


def load_example():
    spec = importlib.util.spec_from_file_location("distributed_example",
                                                  ROOT / "examples" / "distributed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Probe(Callback):
    """Record what the test checks: alignment of batches, latents and flags per refresh."""

    def __init__(self):
        self.refreshes = []
        self.aligned = self.misaligned = 0
        self.seen = []
        self.first_batches = []

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        self.X_train = np.stack([dataset_train[i][0] for i in range(len(dataset_train))])
        self.seen.append(set())
        if "lcc_n_clusters" not in net.history[-1]:
            return
        # Runs after the refresh: the same weights give the latents it clustered.
        latents, y = net.training_latents(dataset_train)
        layer = net.lcc_layers_[0]
        inner = unwrap_parallel(net.module_)
        with LatentRecorder(inner, [layer]) as rec, torch.no_grad():
            training = inner.training
            inner.eval()
            inner(torch.as_tensor(self.X_train))
            inner.train(training)
            reference = rec.outputs[layer].numpy().copy()
        self.refreshes.append({"Z": latents[layer], "y": y, "reference": reference,
                               "misclustered": net.lcc_states_[layer].misclustered})

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if not training:
            return
        Xi, _, index = batch
        index = index.cpu().numpy()
        same = np.all(Xi.cpu().numpy() == self.X_train[index], axis=1)
        self.aligned += int(same.sum())
        self.misaligned += int((~same).sum())
        if not self.seen[-1]:
            self.first_batches.append(index[:8])
        self.seen[-1].update(index.tolist())


def main(out: Path) -> None:
    example = load_example()
    probe = Probe()
    net = example.main(callbacks=[("probe", probe),
                                  ("checkpoint", Checkpoint(dirname=str(out / "checkpoint")))])
    rank = net.accelerator.process_index
    arrays = {"aligned": probe.aligned, "misaligned": probe.misaligned,
              "seen": np.array([len(s) for s in probe.seen]),
              "seen_positions": np.array(sorted(probe.seen[-1])),
              "first_batches": np.stack(probe.first_batches)}
    for k, refresh in enumerate(probe.refreshes):
        arrays.update({f"{name}_{k}": value for name, value in refresh.items()})
    np.savez(out / f"rank{rank}.npz", n_refreshes=len(probe.refreshes), **arrays)
    keys = ["epoch", "train_loss", "valid_loss", "valid_acc", "train_lcc", "lcc_n_clusters",
            "lcc_misclustered", "lcc_modularity", "valid_loss_best", "event_cp"]
    history = [{k: row[k] for k in keys if k in row} for row in net.history]
    (out / f"rank{rank}.json").write_text(json.dumps(history))
    net.accelerator.wait_for_everyone()
    net.accelerator.end_training()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
