"""``CenterLossClassifier``: cross-entropy plus center loss, the peer method LCC is compared with.

Center loss (Wen et al., ECCV 2016) pulls every sample's latent towards a learnable
center of its class. It is the closest well-known peer of LCC, which pulls only
misclustered samples, towards clusters found in the data. It lives in the package,
not only in the benchmark, because users who try LCC will want to compare it with
the standard alternative under the same recipe: same base class, same seeding, same
label handling, so a paired comparison differs by the term alone.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import LatentPenaltyClassifier
from .latents import resolve_latent_layers
from .validation import check_real

__all__ = ["CenterLossClassifier", "center_loss"]


def center_loss(z: torch.Tensor, centers: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Center loss of Wen et al. (2016): ``1/2 * mean_b ||z_b - c_{y_b}||^2``.

    Parameters
    ----------
    z : Tensor of shape (batch, d)
        Latents of the batch.
    centers : Tensor of shape (n_classes, d)
        One learnable center per class.
    y : Tensor of shape (batch,)
        Class codes.

    Returns
    -------
    loss : Tensor, scalar
        Half the mean squared distance of each latent to its class's center.

    Examples
    --------
    >>> z = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    >>> float(center_loss(z, torch.zeros(2, 2), torch.tensor([0, 1])))  # (2 + 4) / 2 / 2
    1.5

    """
    diff = z - centers[y.long()]
    return 0.5 * diff.pow(2).sum(dim=1).mean()


class _Centers(nn.Module):
    def __init__(self, n_classes: int, dim: int):
        super().__init__()
        # Zeros draw no random numbers, so the seeded module initialisation is unchanged.
        self.weight = nn.Parameter(torch.zeros(n_classes, dim))


class CenterLossClassifier(LatentPenaltyClassifier):
    """Neural-network classifier trained with cross-entropy plus center loss.

    Training loss: ``criterion + center_weight * center_loss(z, centers, y)`` on one
    latent layer; validation loss is the criterion alone. The centers are learnable,
    in their own optimizer parameter group (learning rate ``center_lr``, no weight
    decay) that follows the network's learning-rate schedule.

    Parameters
    ----------
    module : torch module class or instance
        As for skorch (see :class:`~sklcc.base.LatentPenaltyClassifier`).
    *args
        The positional arguments of skorch after ``module`` (``criterion``).
    center_layer : str or None, default=None
        Module path whose output is the latent (``"name:input"`` takes its input);
        None takes the input of the last ``nn.Linear``, as ``LCCClassifier`` does.
    center_weight : float, default=0.003
        Weight of the center loss (Wen et al. used 0.003 to 0.01).
    center_lr : float, default=0.01
        Learning rate of the centers' parameter group.
    center_dim : int or None, default=None
        Width of the latent; None reads it from the layer (the ``in_features`` of a
        Linear's input, or the ``out_features`` of the last Linear in the module).
    random_state : int or None, default=None
        Seeds torch for the duration of ``fit``.
    **kwargs
        Every other skorch argument.

    Attributes
    ----------
    centers_ : torch module
        Holds ``weight`` of shape ``(n_classes, center_dim)``.

    See Also
    --------
    sklcc.center_loss.center_loss : The term it adds to the criterion.
    sklcc.LCCClassifier : The same base with the latent cluster correction term instead.
    sklcc.base.LatentPenaltyClassifier : The shared base of sklcc's classifiers.

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from sklcc import CenterLossClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> module = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
    ...                              torch.nn.Linear(32, 10), torch.nn.Softmax(dim=-1))
    >>> clf = CenterLossClassifier(module, max_epochs=3, lr=0.1, random_state=0,
    ...                            verbose=0).fit(X / 16, y)
    >>> tuple(clf.centers_.weight.shape)
    (10, 32)

    """

    penalty_name = "center"

    def __init__(self, module, *args, center_layer: str | None = None,
                 center_weight: float = 0.003, center_lr: float = 0.01,
                 center_dim: int | None = None, random_state: int | None = None, **kwargs):
        super().__init__(module, *args, random_state=random_state, **kwargs)
        self.center_layer = center_layer
        self.center_weight = center_weight
        self.center_lr = center_lr
        self.center_dim = center_dim

    @property
    def penalty_weight(self) -> float:
        """``center_weight``."""
        return self.center_weight

    def check_penalty_params(self) -> None:
        """Validate the center-loss parameters."""
        check_real("center_weight", self.center_weight, low=0, strict=False,
                   hint="0 trains with the criterion alone")
        check_real("center_lr", self.center_lr, low=0, strict=False,
                   hint="the centers' learning rate")

    def penalty_layers(self) -> list[str]:
        """Resolve the one hooked layer against the module.

        Returns
        -------
        layers : list of str
            ``center_layer`` resolved (one name).

        """
        return resolve_latent_layers(self.module_, self.center_layer)

    def initialize_module(self):
        """Build the network, then one zero center per class.

        Returns
        -------
        self : CenterLossClassifier
            This net, with the network in ``module_`` and the centers in ``centers_``.

        """
        super().initialize_module()
        n_classes = self._n_classes()
        if n_classes is None:
            raise ValueError(
                "CenterLossClassifier needs the number of classes before training: fit on "
                "labels y, or pass classes=[...] when X is a Dataset."
            )
        dim = self.center_dim or _latent_width(self.module_, self.penalty_layers()[0])
        self.centers_ = _Centers(n_classes, dim).to(self.device)
        return self

    def initialize_optimizer(self, triggered_directly=None):
        """Build one optimizer: the network's parameters, plus a group for the centers.

        Parameters
        ----------
        triggered_directly : bool, optional
            The argument skorch passes (not used).

        Returns
        -------
        self : CenterLossClassifier
            This net, with the optimizer in ``optimizer_``.

        """
        args, kwargs = self.get_params_for_optimizer("optimizer", self.module_.named_parameters())
        self.optimizer_ = self.optimizer(*args, **kwargs)
        self.optimizer_.add_param_group(
            {"params": list(self.centers_.parameters()), "lr": self.center_lr,
             "weight_decay": 0.0}
        )
        return self

    def penalty_term(self, y_true: torch.Tensor) -> torch.Tensor:
        """Return the center loss of the current training batch.

        Parameters
        ----------
        y_true : Tensor of shape (batch,)
            Class codes of the batch.

        Returns
        -------
        term : Tensor, scalar
            The center loss of the batch's latents at ``center_layer``.

        """
        (z,) = self.fit_state_.recorder.outputs.values()
        return center_loss(z, self.centers_.weight, y_true.to(z.device))


def _latent_width(module: nn.Module, layer: str) -> int:
    target = dict(module.named_modules())[layer.removesuffix(":input")]
    if layer.endswith(":input") and isinstance(target, nn.Linear):
        return target.in_features
    linears = [m for m in target.modules() if isinstance(m, nn.Linear)]
    if not layer.endswith(":input") and linears:
        return linears[-1].out_features
    raise ValueError(
        f"cannot read the width of latent layer {layer!r} from the module; pass "
        "center_dim=<its number of features>."
    )
