"""The benchmark's data: images loaded, subsampled and turned into network inputs."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from sklcc.images import ImageEmbedder, default_cache_dir, load_dataset

from .models import parse_finetune

__all__ = ["DATA_SEED", "prepare_data", "stratified_subset"]

#: Seed of the train/test subsets and of the tuning split: fixed, so every seed and
#: method sees the same data.
DATA_SEED = 0


def stratified_subset(labels: np.ndarray, size: int | None) -> np.ndarray:
    """Return the sorted indices of a stratified subset of ``size`` samples (all when None).

    Seeded with :data:`DATA_SEED`, so every seed and method sees the same subset.

    Examples
    --------
    >>> import numpy as np
    >>> stratified_subset(np.array([0, 0, 1, 1]), 2).shape, stratified_subset(np.zeros(3), None)
    ((2,), array([0, 1, 2]))

    """
    index = np.arange(len(labels))
    if size is None or size >= len(labels):
        return index
    subset, _ = train_test_split(index, train_size=size, stratify=labels,
                                 random_state=DATA_SEED)
    return np.sort(subset)


def prepare_data(cfg: dict[str, Any]) -> dict[str, Any]:
    """Load the images and turn them into the network's input rows.

    ``head``: pooled embeddings through :class:`ImageEmbedder`'s on-disk cache (of the
    whole split when a cache file of it exists, else of the subset only).
    ``last-blocks:N``: the activations entering the last N blocks, cached the same way.
    ``full``: the images themselves, as float32 ``(N, H, W, 3)``.

    Parameters
    ----------
    cfg : dict
        From :func:`lccbench.config.resolve_config`.

    Returns
    -------
    dict
        ``X_train``, ``y_train``, ``X_test``, ``y_test`` (float32 inputs, int64 codes),
        ``n_classes``, ``in_features`` and an ``info`` dict for the report.

    """
    start = time.perf_counter()
    train, test = load_dataset(cfg["dataset"], data_dir=cfg["data_dir"])
    train_idx = stratified_subset(train.labels, cfg["train_subset"])
    if cfg.get("train_fraction"):
        # The published recipe trains on the first 80 % of the training split.
        train_idx = train_idx[: int(len(train_idx) * cfg["train_fraction"])]
    test_idx = stratified_subset(test.labels, cfg["test_subset"])
    regime, n_blocks = parse_finetune(cfg["finetune"])
    info = {"dataset": cfg["dataset"], "classes": train.classes,
            "n_train_total": len(train), "n_test_total": len(test)}
    if regime == "full":
        X_train = train.images[train_idx].astype(np.float32)
        X_test = test.images[test_idx].astype(np.float32)
        in_features = 0
    else:
        cache_dir = cfg["cache_dir"] or default_cache_dir()
        embedder = ImageEmbedder(
            cfg["backbone"], image_size=cfg["image_size"],
            output="pooled" if regime == "head" else f"blocks:{n_blocks}",
            device=cfg["device"], cache_dir=cache_dir, progress=True,
            pretrained=not cfg["random_weights"],
        ).fit(train.images[:1])
        parts, files = [], []
        for name, images, idx in (("train", train.images, train_idx),
                                  ("test", test.images, test_idx)):
            whole = embedder.cache_file(images)
            if len(idx) < len(images) and not whole.is_file():
                images, idx = images[idx], np.arange(len(idx))
            path = embedder.cache_file(images)
            hit = path.is_file()
            tqdm.write(f"[data] {name}: {len(images)} images -> {embedder.output} "
                       f"{'read from cache' if hit else 'computing, caching to'} {path}")
            parts.append(embedder.transform(images)[idx])
            files.append({"split": name, "file": str(path), "cache_hit": hit})
        X_train, X_test = parts
        in_features = X_train.shape[1]
        info["cache_files"] = files
    info.update(n_train=len(train_idx), n_test=len(test_idx), n_classes=len(train.classes),
                input_shape=list(X_train.shape[1:]))
    return {
        "X_train": np.ascontiguousarray(X_train), "y_train": train.labels[train_idx],
        "X_test": np.ascontiguousarray(X_test), "y_test": test.labels[test_idx],
        "n_classes": len(train.classes), "in_features": in_features, "info": info,
        "prepare_s": time.perf_counter() - start,
    }

