"""The clustering loss term, computed on each training batch."""

from __future__ import annotations

import math

import torch

__all__ = ["lcc_loss"]


def lcc_loss(
    z: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None, *,
    gather: bool = True,
) -> torch.Tensor:
    """Mean scaled distance of the masked latents to their targets.

    ``term_b = ||z_b - t_b||_2 / sqrt(d)`` (not squared) for every ``b`` with
    ``mask[b]``, averaged over those samples.

    Parameters
    ----------
    z : Tensor of shape (batch, d)
        Batch latents, with gradient.
    targets : Tensor of shape (batch, d)
        Target latent of each sample (ignored where ``mask`` is False); no gradient.
    mask : Tensor of shape (batch,), bool, optional
        Samples that are misclustered and have a target; None takes every row.
    gather : bool, default=True
        Take the masked rows out before the distances (``z[mask]``). False weighs
        every row by its mask instead: the same value up to float rounding, and no
        shape depends on the mask, so on an accelerator nothing waits for the device.

    Returns
    -------
    loss : Tensor, scalar
        The mean term; an exact zero still attached to ``z``'s graph when ``mask``
        selects nothing (or ``z`` has no row), so ``backward`` works in every batch.

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    >>> float(lcc_loss(z, torch.zeros(2, 2), torch.tensor([True, False])))  # 5 / sqrt(2)
    3.535533905029297

    """
    if mask is not None and not gather:
        norms = torch.linalg.vector_norm(z - targets.to(dtype=z.dtype), dim=1)
        count = mask.sum().clamp(min=1) * math.sqrt(z.shape[1])
        return norms.where(mask, 0.0).sum() / count
    if mask is not None:
        z, targets = z[mask], targets[mask]
    if len(z) == 0:
        return z.sum() * 0.0
    diff = z - targets.to(dtype=z.dtype)
    # One scale instead of mean() then a division: two autograd nodes fewer on
    # every training batch.
    return torch.linalg.vector_norm(diff, dim=1).sum() * (1.0 / (len(z) * math.sqrt(z.shape[1])))
