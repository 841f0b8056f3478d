"""Seeding torch for the duration of a fit, without touching the global generator."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["torch_seed"]


@contextlib.contextmanager
def torch_seed(random_state: int | None) -> Iterator[None]:
    """Seed torch inside the block and restore the previous random state afterwards.

    The CPU generator and, where CUDA is available, the current device's generator are
    forked, so module initialisation, shuffling and dropout inside the block are
    reproducible and code after it draws exactly what it would have drawn without it.

    Parameters
    ----------
    random_state : int or None
        Seed; None leaves the generators alone.

    Yields
    ------
    None
        Control returns to the block; the previous random state is back when it exits.

    Examples
    --------
    >>> import torch
    >>> with torch_seed(0):
    ...     a = torch.rand(2)
    >>> with torch_seed(0):
    ...     b = torch.rand(2)
    >>> bool((a == b).all())
    True

    """
    if random_state is None:
        yield
        return
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(random_state)
        yield
