"""The training split's latents, kept from the training forward passes of one epoch (internal).

With ``lcc_latents="train"`` the refresh clusters these instead of running an extra
forward pass over the training split in eval mode (:func:`~sklcc.latents.collect_latents`):
the hooks already see every training batch's latents, and each batch knows its
samples' positions in the training split.
"""

from __future__ import annotations

import numpy as np
import torch
from skorch.utils import to_numpy

__all__ = ["LatentBuffer"]


class LatentBuffer:
    """Per-layer float32 rows of the training split, filled batch by batch on the CPU.

    A row is written when a training batch holding that sample ends, so after an
    epoch that saw every sample the buffer holds, in dataset order, what the hooks
    saw in that epoch: training-mode activations (dropout on, batch-norm on batch
    statistics) of weights that moved during the epoch.

    Parameters
    ----------
    n_samples : int
        Size of the training split.

    Attributes
    ----------
    seen : ndarray of shape (n_samples,), bool
        Whether a batch has written the sample's row.

    Examples
    --------
    >>> import torch
    >>> buffer = LatentBuffer(4)
    >>> buffer.add(torch.tensor([3, 1]), {"h": torch.ones(2, 2)}, torch.tensor([1, 0]))
    >>> buffer.missing().tolist()
    [0, 2]
    >>> latents, y = buffer.arrays()
    >>> latents["h"][3].tolist(), y.tolist()
    ([1.0, 1.0], [0, 0, 0, 1])

    """

    def __init__(self, n_samples: int):
        self.n_samples = n_samples
        self.seen = np.zeros(n_samples, dtype=bool)
        self._latents: dict[str, np.ndarray] = {}
        self._y = np.zeros(n_samples, dtype=np.int64)

    def add(self, index, outputs: dict[str, torch.Tensor], y) -> None:
        """Write one training batch's latents and labels at its positions.

        Parameters
        ----------
        index : Tensor or ndarray of shape (batch,)
            Positions of the batch's samples in the training split.
        outputs : dict of str to Tensor of shape (batch, n_features)
            The batch's latents (on any device, possibly on the graph).
        y : Tensor or ndarray of shape (batch,)
            The batch's class codes.

        """
        rows = to_numpy(index).astype(np.int64)
        for layer, z in outputs.items():
            # One copy off the device per layer and batch, outside autograd.
            z = z.detach().float().cpu().numpy()
            if layer not in self._latents:
                self._latents[layer] = np.empty((self.n_samples, z.shape[1]), np.float32)
            self._latents[layer][rows] = z
        self._y[rows] = to_numpy(y).reshape(-1)
        self.seen[rows] = True

    def missing(self) -> np.ndarray:
        """Positions no batch has written (for instance dropped by ``drop_last``)."""
        return np.flatnonzero(~self.seen)

    def arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Return the latents per layer and the labels (rows of :meth:`missing` undefined).

        Returns
        -------
        latents : dict of str to ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,), int64

        """
        return self._latents, self._y
