"""
Data-parallel LCC with accelerate (shown, not run here)
=======================================================

LCC trained data-parallel on scikit-learn's digits, one process per device, with
:class:`sklcc.distributed.DistributedLCCClassifier`. It needs several processes, so this page
shows the code without running it; run it with::

    torchrun --standalone --nproc_per_node 2 examples/distributed.py

Without GPUs the processes run on CPUs and talk over gloo. Every rank loads the same
data and builds the same net; accelerate shards the batches, and at each refresh the
ranks gather their shards' latents and cluster them alike. Rank 0 prints one line per
refresh and the test accuracy; the last line says whether every rank holds the same
flags (a digest of them compared across ranks).
"""

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from skorch.callbacks import EarlyStopping

from sklcc.distributed import DistributedLCCClassifier, states_digest


class MLP(torch.nn.Module):
    """64 -> 64 -> 10 with the LCC latent at ``hidden``."""

    def __init__(self, n_hidden: int = 64):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(64, n_hidden), torch.nn.ReLU())
        self.out = torch.nn.Linear(n_hidden, 10)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


def load_data(seed: int = 0):
    """Digits scaled to [0, 1], split 70/30 (the same split on every rank)."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)


def main(seed: int = 0, max_epochs: int = 8, callbacks=()) -> DistributedLCCClassifier:
    """Train on every rank, report from rank 0; ``callbacks`` are added to the net's."""
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    X_train, X_test, y_train, y_test = load_data(seed)
    net = DistributedLCCClassifier(
        MLP, accelerator=accelerator, lcc_layers=["hidden"], lcc_weight=0.1,
        n_neighbors=10, lcc_warmup=2, lcc_interval=2, random_state=seed,
        max_epochs=max_epochs, lr=0.05, batch_size=64, optimizer=torch.optim.SGD,
        optimizer__momentum=0.9, iterator_train__shuffle=True,
        # AccelerateMixin prints the epoch table through accelerator.print (rank 0 only),
        # whatever verbose says; print with verbose=0 keeps this output to the lines below.
        verbose=0, callbacks__print_log__sink=print,
        callbacks=[("early_stopping", EarlyStopping(patience=5)), *callbacks],
    )
    net.fit(X_train, y_train)

    accelerator.print(f"{accelerator.num_processes} ranks ({accelerator.distributed_type}); "
                      f"fit on {len(X_train)} samples, 1/5 of them held out for validation")
    for row in net.history:
        if "lcc_n_clusters" in row:
            accelerator.print(f"refresh at epoch {row['epoch']:2d}: "
                              f"{row['lcc_n_clusters']:3.0f} clusters, "
                              f"{row['lcc_misclustered']:.3f} misclustered")
    accuracy = net.score(X_test, y_test)  # every rank predicts the whole test set
    accelerator.print(f"test accuracy: {accuracy:.4f}")

    digests = gather_object([states_digest(net.lcc_states_)])
    verdict = "ranks agree" if len(set(digests)) == 1 else "ranks DISAGREE"
    accelerator.print(f"{verdict}: flag digest {digests[0][:12]} on {len(digests)} ranks")
    return net


if __name__ == "__main__":
    main().accelerator.end_training()  # destroys the process group before the interpreter exits
