"""The methods compared: one estimator per method name, and the tuned methods' search.

Every method is an :class:`sklcc.LatentPenaltyClassifier` with the same module, optimizer,
schedule, batches and seed, so that within a seed they differ by their loss term only:

- ``ce``: :class:`sklcc.LatentPenaltyClassifier` itself, cross-entropy alone;
- ``lcc``: :class:`sklcc.LCCClassifier` on the head's hidden layer;
- ``center``: :class:`sklcc.CenterLossClassifier` on the same layer;
- ``ce-tuned`` / ``lcc-tuned``: the same, with parameters from :func:`tune`;
- ``ce+ls`` / ``lcc+ls``: ``ce`` and ``lcc`` with label-smoothed cross-entropy
  (``--label-smoothing``, 0.1 by default), the control a practitioner tries first;
- ``lcc@louvain_resolution=R``: ``lcc`` with that Louvain resolution;
- ``lcc@w=W,k=K,layer=L``: one cell of the published grid: :class:`sklcc.LCCClassifier`
  with weight ``W``, ``n_neighbors=K`` (the target's ``k`` too), latents at placement
  ``L`` and the published clustering whatever the ``lcc`` options say
  (:data:`PUBLISHED_LCC`), so that ``lcc`` (today's defaults) and a published cell can
  run side by side under one recipe.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from skorch.callbacks import GradientNormClipping, LRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR
from tqdm.auto import tqdm

from sklcc import CenterLossClassifier, LatentPenaltyClassifier, LCCClassifier

from .config import (
    BASE_METHODS,
    GRID_PREFIX,
    SMOOTHED,
    SWEEP_PREFIX,
    estimator_default,
    grid_method,
    parse_grid_method,
)
from .data import DATA_SEED
from .models import HIDDEN_LAYER, FineTuneNet, placement_layer

#: The LCC options of every published grid cell: the exact knn-mean target over every
#: correctly clustered sample, the exact graph (faiss's brute force, as published) on the
#: whole training split in the full latent space.
PUBLISHED_LCC = {"lcc_target": "knn-mean", "lcc_target_k": None, "n_representatives": None,
                 "cluster_sample_size": None, "cluster_n_components": None,
                 "knn_algorithm": "brute"}

__all__ = ["make_estimator", "tune"]


def make_estimator(method: str, cfg: dict[str, Any], data: dict[str, Any], seed: int,
                   params: dict[str, Any] | None = None, extra_callbacks: list | None = None):
    """Build the unfitted estimator of one method.

    Every method shares the module, optimizer (AdamW), cosine schedule, batch size,
    epochs and seed; only the loss differs.

    Parameters
    ----------
    method : str
        ``ce``, ``lcc``, ``center``, ``ce-tuned``, ``lcc-tuned``, ``ce+ls``, ``lcc+ls``,
        ``lcc@louvain_resolution=R`` or ``lcc@w=W,k=K,layer=L``.
    cfg : dict
        Configuration.
    data : dict
        From :func:`lccbench.data.prepare_data`.
    seed : int
        Torch seed of the fit (and of LCC's clustering).
    params : dict, optional
        Extra ``set_params`` values (the tuned parameters).
    extra_callbacks : list, optional
        Extra ``(name, callback)`` pairs, run after the learning-rate scheduler.

    Returns
    -------
    sklcc.LatentPenaltyClassifier
        ``ce``: the base class itself (cross-entropy only); ``lcc``:
        :class:`sklcc.LCCClassifier`; ``center``: :class:`sklcc.CenterLossClassifier`.

    """
    callbacks = [("lr_scheduler", LRScheduler(policy=CosineAnnealingLR, T_max=cfg["epochs"]))]
    if cfg.get("grad_clip"):
        callbacks.append(("grad_clip", GradientNormClipping(cfg["grad_clip"])))
    if cfg.get("optimizer", "adamw") == "sgd":
        optimizer = dict(optimizer=torch.optim.SGD, optimizer__momentum=cfg["momentum"])
    else:
        optimizer = dict(optimizer=torch.optim.AdamW)
    common = dict(
        module=FineTuneNet,
        module__n_classes=data["n_classes"], module__in_features=data["in_features"],
        module__hidden=cfg["hidden"], module__dropout=cfg["dropout"],
        module__finetune=cfg["finetune"], module__backbone=cfg["backbone"],
        module__image_size=cfg["image_size"], module__pretrained=not cfg["random_weights"],
        criterion=torch.nn.CrossEntropyLoss,
        **optimizer, lr=cfg["lr"], optimizer__weight_decay=cfg["weight_decay"],
        batch_size=cfg["batch_size"], max_epochs=cfg["epochs"],
        iterator_train__shuffle=True, train_split=None, device=cfg["device"], verbose=0,
        callbacks=callbacks + list(extra_callbacks or []),
        random_state=seed,
    )
    if method.endswith(SMOOTHED):
        common["criterion__label_smoothing"] = cfg["label_smoothing"]
    base = method.removesuffix("-tuned").removesuffix(SMOOTHED)
    louvain_resolution = cfg["louvain_resolution"]
    layer, weight, k = HIDDEN_LAYER, cfg["lcc_weight"], cfg["n_neighbors"]
    # A configuration may leave out the options the LCC runs added later: the defaults.
    lcc_options = {"lcc_target": cfg.get("lcc_target", estimator_default("lcc_target")),
                   "lcc_target_k": None,
                   "n_representatives": cfg["n_representatives"],
                   "cluster_sample_size": cfg["cluster_sample_size"],
                   "cluster_n_components": cfg["cluster_n_components"],
                   "knn_algorithm": cfg.get("knn_algorithm", estimator_default("knn_algorithm")),
                   "louvain_backend": cfg.get("louvain_backend",
                                              estimator_default("louvain_backend"))}
    if method.startswith(SWEEP_PREFIX):
        base, louvain_resolution = "lcc", float(method.removeprefix(SWEEP_PREFIX))
    elif method.startswith(GRID_PREFIX):
        weight, k, placement = parse_grid_method(method)
        base, layer = "lcc", placement_layer(placement, cfg["finetune"])
        lcc_options = {**PUBLISHED_LCC, "louvain_backend": lcc_options["louvain_backend"]}
    if base == "ce":
        net = LatentPenaltyClassifier(**common)
    elif base == "center":
        net = CenterLossClassifier(center_layer=HIDDEN_LAYER, center_weight=cfg["center_weight"],
                                   center_lr=cfg["center_lr"], **common)
    elif base == "lcc":
        net = LCCClassifier(
            lcc_layers=[layer], lcc_weight=weight, n_neighbors=k,
            louvain_resolution=louvain_resolution, lcc_warmup=cfg["lcc_warmup"],
            lcc_interval=cfg["lcc_interval"], **lcc_options, **common,
        )
    else:
        raise ValueError(f"unknown method {method!r}; expected one of {BASE_METHODS}, "
                         f"{SWEEP_PREFIX}<value> or {grid_method(0.01, 50, 'logits')}.")
    return net.set_params(**(params or {}))


def tune(cfg: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Choose the parameters of ``ce-tuned`` and ``lcc-tuned`` on a validation split.

    Both searches get ``tune_trials`` Optuna trials and the same split: a stratified
    ``tune_valid_fraction`` of the training data, seeded with :data:`DATA_SEED`. CE
    searches the learning rate and weight decay; LCC the same plus ``lcc_weight`` and
    ``louvain_resolution``. The test set is never used.

    Parameters
    ----------
    cfg : dict
        Configuration.
    data : dict
        From :func:`lccbench.data.prepare_data`.

    Returns
    -------
    dict
        ``{"skipped": reason}`` when :mod:`sklcc.tuning` cannot be imported, else the
        split, the trial count and, per method, ``best_params``, ``best_valid_score``,
        ``search_s`` and every trial.

    """
    try:
        from optuna.distributions import FloatDistribution

        from sklcc.tuning import LCCSearchCV
    except ImportError as err:
        return {"skipped": f"sklcc.tuning is not importable ({err}); lcc-tuned and ce-tuned "
                           "were not run."}
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    y = data["y_train"]
    train_idx, valid_idx = train_test_split(
        np.arange(len(y)), test_size=cfg["tune_valid_fraction"], stratify=y,
        random_state=DATA_SEED,
    )
    spaces = {
        "ce-tuned": {"lr": FloatDistribution(1e-4, 1e-2, log=True),
                     "optimizer__weight_decay": FloatDistribution(1e-4, 1e-1, log=True)},
    }
    spaces["lcc-tuned"] = {**spaces["ce-tuned"],
                           "lcc_weight": FloatDistribution(1e-3, 0.3, log=True),
                           "louvain_resolution": FloatDistribution(0.5, 16.0, log=True)}
    out = {"n_trials": cfg["tune_trials"], "valid_fraction": cfg["tune_valid_fraction"],
           "seed": DATA_SEED, "n_fit": len(train_idx), "n_valid": len(valid_idx), "methods": {}}
    for method in ("ce-tuned", "lcc-tuned"):
        if method not in cfg["methods"]:
            continue
        tqdm.write(f"[tune] {method}: {cfg['tune_trials']} trials on {len(train_idx)} / "
                   f"{len(valid_idx)} train / validation samples")
        search = LCCSearchCV(
            make_estimator(method, cfg, data, seed=DATA_SEED), spaces[method],
            n_trials=cfg["tune_trials"], cv=[(train_idx, valid_idx)], scoring="accuracy",
            refit=False, random_state=DATA_SEED, show_progress_bar=True,
        )
        start = time.perf_counter()
        search.fit(data["X_train"], y)
        res = search.cv_results_
        out["methods"][method] = {
            "best_params": search.best_params_, "best_valid_score": search.best_score_,
            "search_s": time.perf_counter() - start,
            "trials": [{"params": p, "valid_score": float(s)}
                       for p, s in zip(res["params"], res["mean_test_score"], strict=True)],
        }
    return out
