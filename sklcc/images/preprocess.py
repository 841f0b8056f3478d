"""Channels-last pixels to the standardised tensors a pretrained backbone takes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ImagePreprocess"]


class ImagePreprocess(nn.Module):
    """``(N, H, W, 3)`` pixels in 0..255 to standardised ``(N, 3, R, R)`` tensors.

    Resizing is bilinear and antialiased; standardisation uses the per-channel
    statistics the backbone's weights expect. :class:`~sklcc.images.ImageEmbedder`
    and a fine-tuned network that starts from raw images share this module, so both
    see exactly the same inputs.

    Parameters
    ----------
    image_size : int
        Output side length.
    mean, std : sequence of 3 floats
        Per-channel statistics in 0..255 units, from the backbone.

    See Also
    --------
    sklcc.images.ImageEmbedder : Embeds images through it and a backbone.
    sklcc.images.backbones.Backbone : Holds the ``mean`` and ``std`` its weights expect.

    Examples
    --------
    >>> import torch
    >>> pre = ImagePreprocess(4, mean=(0, 0, 0), std=(255, 255, 255))
    >>> tuple(pre(torch.full((2, 8, 8, 3), 255, dtype=torch.uint8)).shape)
    (2, 3, 4, 4)

    """

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.image_size = int(image_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Resize and standardise a batch of channels-last images.

        Parameters
        ----------
        x : torch.Tensor of shape (N, H, W, 3)
            Pixels in 0..255, of any dtype (uint8 as loaded).

        Returns
        -------
        torch.Tensor of shape (N, 3, image_size, image_size), float32
            ``(pixels - mean) / std`` per channel, resized when ``H`` or ``W`` differs
            from ``image_size``.

        """
        x = x.permute(0, 3, 1, 2).float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = nn.functional.interpolate(x, size=(self.image_size, self.image_size),
                                          mode="bilinear", antialias=True, align_corners=False)
        return (x - self.mean) / self.std
