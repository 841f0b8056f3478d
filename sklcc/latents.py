"""Latent capture: forward hooks on named modules (step 1 of the refresh).

A latent layer is named by its module path in ``module.named_modules()``; the hook
keeps that module's output. ``"name:input"`` keeps the module's (first) input
instead, which is how the default, the input of the last ``nn.Linear``, is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from skorch.dataset import Dataset as SkorchDataset
from skorch.dataset import unpack_data
from skorch.utils import to_tensor
from torch import nn

__all__ = ["LatentRecorder", "collect_latents", "compare_training_pass", "default_latent_layer",
           "latent_pass", "resolve_latent_layers", "unwrap_parallel"]

#: Tolerances (``torch.allclose``) within which one batch's training-pass latents count
#: as the eval pass's (float32 kernels may round differently between the modes).
TRAINING_PASS_RTOL, TRAINING_PASS_ATOL = 1e-4, 1e-5


def default_latent_layer(module: nn.Module) -> str:
    """Name of the default latent: the input of the module's last ``nn.Linear``.

    Parameters
    ----------
    module : torch.nn.Module
        The network.

    Returns
    -------
    name : str
        ``"<path of the last nn.Linear>:input"``.

    """
    module = unwrap_parallel(module)
    linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"{type(module).__name__} has no nn.Linear, so there is no default latent layer; "
            f"name one with lcc_layers=[...] from: {_available(module)}."
        )
    return f"{linears[-1]}:input"


def resolve_latent_layers(module: nn.Module, lcc_layers: str | Sequence[str] | None) -> list[str]:
    """Check and normalise ``lcc_layers`` against a module.

    Parameters
    ----------
    module : torch.nn.Module
        The network.
    lcc_layers : str, sequence of str or None
        Module names (optionally suffixed ``":input"``); None takes the default.

    Returns
    -------
    layers : list of str
        Layer names, duplicates removed, order kept.

    Raises
    ------
    ValueError
        For an empty list or a name that is not a submodule; the message lists the
        available names.

    """
    module = unwrap_parallel(module)
    if lcc_layers is None:
        return [default_latent_layer(module)]
    layers = [lcc_layers] if isinstance(lcc_layers, str) else list(lcc_layers)
    if not layers:
        raise ValueError("lcc_layers=[] names no layer; pass None for the default or module names.")
    modules = dict(module.named_modules())
    for layer in layers:
        if not isinstance(layer, str) or layer.removesuffix(":input") not in modules:
            raise ValueError(
                f"lcc_layers contains {layer!r}, which is not a submodule of "
                f"{type(module).__name__}; available names: {_available(module)} "
                "(append ':input' to take a module's input instead of its output)."
            )
    return list(dict.fromkeys(layers))


def unwrap_parallel(module: nn.Module) -> nn.Module:
    """Return the network inside data-parallel wrappers (which prefix its names ``module.``).

    Layer names are those of the user's network, so they hold the same whether or not
    ``DistributedDataParallel`` (or ``DataParallel``) wraps it for training.

    Parameters
    ----------
    module : torch.nn.Module
        A network, possibly wrapped (several times) in ``DistributedDataParallel`` or
        ``DataParallel``.

    Returns
    -------
    torch.nn.Module
        The innermost wrapped network; ``module`` itself when it is not a wrapper.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> unwrap_parallel(torch.nn.DataParallel(net)) is net
    True

    """
    while isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        module = module.module
    return module


def _available(module: nn.Module) -> list[str]:
    return [name for name, _ in module.named_modules() if name]


class LatentRecorder:
    """Keep the latest latent of each named layer during forward passes.

    Use as a context manager: hooks are attached on entry and removed on exit, so a
    fitted network carries no hook (and pickles cleanly).

    Parameters
    ----------
    module : torch.nn.Module
        The network.
    layers : list of str
        Layer names from :func:`resolve_latent_layers`.
    undo_dropout : bool, default=False
        Also keep, in ``clean``, each latent as it was before a dropout: where a
        latent is the very tensor a dropout module returned in training mode (the
        input of a ``Linear`` that follows a ``Dropout``, or the dropout's own
        output), its clean version is that dropout's input, which is what an
        eval-mode pass computes (dropout is the identity there). An in-place dropout
        leaves no input to take, and a dropout applied as a function
        (``F.dropout``) is not seen; those latents stay as they are.

    Attributes
    ----------
    outputs : dict of str to Tensor
        Latest latent of each layer, flattened to (batch, features), still on the
        graph during training: what the training loss acts on.
    clean : dict of str to Tensor
        The same latents with a directly preceding dropout undone (with
        ``undo_dropout``; otherwise the same tensors as ``outputs``): what a
        refresh clusters with ``lcc_latents="train"``.

    See Also
    --------
    sklcc.latents.resolve_latent_layers : The names of the layers it hooks.
    sklcc.latents.collect_latents : Runs the eval pass over a dataset with it entered.
    sklcc.base.FitState : Holds the recorder of a fit, whose latents the training loss reads.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> with LatentRecorder(net, ["1", "2:input"]) as rec:
    ...     _ = net(torch.ones(5, 3))
    ...     print({k: tuple(v.shape) for k, v in rec.outputs.items()})
    {'1': (5, 4), '2:input': (5, 4)}

    """

    def __init__(self, module: nn.Module, layers: list[str], *, undo_dropout: bool = False):
        self.module = module
        self.layers = layers
        self.undo_dropout = undo_dropout
        self.outputs: dict[str, torch.Tensor] = {}
        self.clean: dict[str, torch.Tensor] = {}
        # id(output) -> (output, input) of each dropout run in training mode during the
        # current forward pass (the output is kept so that its id stays its own).
        self._dropped: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._handles: list = []

    def __enter__(self) -> LatentRecorder:
        self._attach()
        return self

    def __exit__(self, *exc) -> None:
        self._detach()
        self.outputs.clear()
        self.clean.clear()

    @contextlib.contextmanager
    def detached(self) -> Iterator[None]:
        """Take the hooks off the module inside the block (to pickle it), then put them back.

        Yields
        ------
        None
            Control returns to the block with the module free of the recorder's hooks.

        """
        self._detach()
        try:
            yield
        finally:
            self._attach()

    def _attach(self) -> None:
        root = unwrap_parallel(self.module)
        modules = dict(root.named_modules())
        if self.undo_dropout:
            self._handles.append(root.register_forward_pre_hook(self._new_pass))
            for module in modules.values():
                if isinstance(module, nn.modules.dropout._DropoutNd):
                    self._handles.append(module.register_forward_hook(self._keep_dropout))
        for layer in self.layers:
            name = layer.removesuffix(":input")
            if layer.endswith(":input"):
                hook = modules[name].register_forward_pre_hook(self._keep_input(layer))
            else:
                hook = modules[name].register_forward_hook(self._keep_output(layer))
            self._handles.append(hook)

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._dropped.clear()

    def _new_pass(self, module, args) -> None:
        self._dropped.clear()

    def _keep_dropout(self, module, args, output) -> None:
        if module.training and args and output is not args[0]:  # in place: nothing to keep
            self._dropped[id(output)] = (output, args[0])

    def _store(self, layer: str, value) -> None:
        if isinstance(value, (tuple, list)):
            value = value[0]
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"latent layer {layer!r} produced {type(value).__name__}, not a tensor; "
                "choose a module whose output (or input with ':input') is a tensor."
            )
        dropped = self._dropped.get(id(value))
        clean = dropped[1] if dropped is not None and dropped[0] is value else value
        self.outputs[layer] = _as_rows(value)
        self.clean[layer] = self.outputs[layer] if clean is value else _as_rows(clean)

    def _keep_output(self, layer: str):
        def hook(module, args, output):
            self._store(layer, output)

        return hook

    def _keep_input(self, layer: str):
        def hook(module, args):
            self._store(layer, args)

        return hook


def _as_rows(value: torch.Tensor) -> torch.Tensor:
    """One row per sample: (batch, ...) flattened to (batch, features)."""
    return value.flatten(1) if value.dim() > 1 else value.unsqueeze(1)


def collect_latents(net, dataset, recorder: LatentRecorder) -> tuple[dict[str, np.ndarray],
                                                                      np.ndarray]:
    """Collect the latents and labels of every sample of ``dataset``, in dataset order.

    Runs the net's evaluation step (eval mode, no gradient) over the dataset with
    the recorder's hooks attached; only the latents are moved to the CPU. The torch
    random state is left as it was, so collecting does not change training.

    Parameters
    ----------
    net : skorch NeuralNet
        An initialised net whose module the recorder hooks.
    dataset : torch Dataset
        Usually the training split.
    recorder : LatentRecorder
        Entered recorder on ``net.module_``.

    Returns
    -------
    latents : dict of str to ndarray of shape (n_samples, n_features)
        Each of ``recorder.layers`` to its latents, one flattened row per sample.
    y : ndarray of shape (n_samples,), int64
        Label of each sample.

    """
    latents, y, _ = latent_pass(net.evaluation_step, _eval_batches(net, dataset), recorder,
                                device="cpu")
    return {layer: Z.numpy() for layer, Z in latents.items()}, y.cpu().numpy().astype(np.int64)


def latent_pass(evaluation_step, batches: Iterable, recorder: LatentRecorder, *,
                device: str | torch.device | None = None
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """Run an evaluation step over batches and keep each layer's latents, in batch order.

    The loop of :func:`collect_latents`, for callers that choose the batches and the
    step themselves (:class:`~sklcc.distributed.DistributedLCCClassifier` passes its
    rank's shard with each batch's positions in the training split). The torch random
    state is left as it was.

    Parameters
    ----------
    evaluation_step : callable
        Called as ``evaluation_step((X, y), training=False)``, e.g. a net's
        ``evaluation_step``; its forward pass fills the recorder.
    batches : iterable of tuple
        ``(X, y)`` or ``(X, y, positions)`` per batch.
    recorder : LatentRecorder
        Entered recorder on the network the step runs.
    device : str or torch.device, optional
        Where each batch's latents go as soon as they are taken (``"cpu"`` keeps one
        batch at a time on the accelerator); None leaves them where they are.

    Returns
    -------
    latents : dict of str to Tensor of shape (n_rows, n_features), float32
        Each of ``recorder.layers`` to its latents, one flattened row per sample.
    y : Tensor of shape (n_rows,)
        Label of each row, on the device the batches carried it on.
    positions : Tensor of shape (n_rows,) or None
        The batches' positions, concatenated; None when the batches carry none.

    """
    chunks: dict[str, list] = {layer: [] for layer in recorder.layers}
    labels, positions = [], []
    with torch.random.fork_rng(devices=[]):
        for Xi, yi, *index in batches:
            evaluation_step((Xi, yi), training=False)
            for layer in recorder.layers:
                Z = recorder.outputs[layer].detach().float()
                chunks[layer].append(Z if device is None else Z.to(device))
            labels.append(torch.as_tensor(yi).reshape(-1))
            if index:
                positions.append(torch.as_tensor(index[0]).reshape(-1))
    latents = {layer: torch.cat(c) for layer, c in chunks.items()}
    return latents, torch.cat(labels), torch.cat(positions) if positions else None


def _eval_batches(net, dataset) -> Iterator:
    """Yield the validation iterator's ``(X, y)`` batches, sliced from arrays when possible."""
    batches = _array_batches(net, dataset)
    if batches is None:
        batches = (unpack_data(b) for b in net.get_iterator(dataset, training=False))
    return batches


def _array_batches(net, dataset) -> Iterator | None:
    """Slice the validation iterator's batches straight from the arrays.

    For the common case, a plain skorch ``Dataset`` over an array or tensor (or
    skorch's validation-split ``Subset`` of one) read by the default ``DataLoader``,
    slicing gives the same batches without fetching and collating every sample on
    its own (half the latent pass for an MLP head). Anything else returns None and
    goes through ``net.get_iterator``.
    """
    base, positions = dataset, None
    if isinstance(dataset, torch.utils.data.Subset):
        base, positions = dataset.dataset, np.asarray(dataset.indices)
    kwargs = net.get_params_for("iterator_valid")
    if (
        type(base) is not SkorchDataset
        or net.iterator_valid is not torch.utils.data.DataLoader
        or set(kwargs) - {"batch_size", "num_workers", "pin_memory"}
        or not all(isinstance(a, (np.ndarray, torch.Tensor)) for a in (base.X, base.y))
        or len(base.X) != len(base.y)
    ):
        return None
    n = len(dataset)
    size = kwargs.get("batch_size", net.batch_size)
    size = n if size == -1 else size

    def batches():
        for start in range(0, n, size):
            rows = slice(start, start + size) if positions is None else (
                positions[start:start + size])
            yield torch.as_tensor(base.X[rows]), torch.as_tensor(base.y[rows])

    return batches()


def compare_training_pass(net, dataset, recorder: LatentRecorder) -> dict[str, tuple[bool, str]]:
    """Whether a training-mode forward pass gives each latent layer its eval-pass latents.

    Decides ``lcc_latents="auto"``. A layer agrees when no normalisation layer that
    uses batch statistics in training mode (batch-norm, an instance norm tracking
    running statistics) runs before it, and when one batch of ``dataset`` gives the
    same latents in both modes, within ``TRAINING_PASS_RTOL`` and
    ``TRAINING_PASS_ATOL`` (which catches a dropout further upstream, a dropout
    applied as a function, or any other module that behaves differently in training).
    The training-mode latents are the recorder's ``clean`` ones,
    as the refresh would use them.

    Nothing of the fit is disturbed: both passes run without gradient on the
    network inside any data-parallel wrapper, the torch random state (CPU and the
    current CUDA device) is forked, and every module's buffers (batch-norm running
    statistics) and training flag are restored afterwards.

    Parameters
    ----------
    net : skorch NeuralNet
        An initialised net whose module the recorder hooks.
    dataset : torch Dataset
        The training split; its first batch of the validation iterator is compared.
    recorder : LatentRecorder
        Entered recorder on ``net.module_``.

    Returns
    -------
    dict of str to (bool, str)
        Per layer: whether the training pass gives the eval pass's latents, and why.

    """
    module = unwrap_parallel(net.module_)
    batches = _eval_batches(net, dataset)
    # Which batch-statistics layers had run when each latent was taken (in training mode).
    ran: list[str] = []
    upstream: dict[str, list[str]] = {}
    handles = [m.register_forward_hook(
                   lambda m, a, o, name=name: ran.append(name) if m.training else None)
               for name, m in module.named_modules()
               if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats]
    modules = dict(module.named_modules())
    for layer in recorder.layers:
        target = modules[layer.removesuffix(":input")]

        def seen(*_, layer=layer):
            upstream.setdefault(layer, list(ran))

        handles.append(target.register_forward_pre_hook(seen) if layer.endswith(":input")
                       else target.register_forward_hook(seen))
    flags = {m: m.training for m in module.modules()}
    buffers = [(b, b.detach().clone()) for b in module.buffers()]
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            Xi, _ = next(iter(batches))  # a DataLoader draws its base seed here
            module.train(True)
            _forward(net, module, Xi)
            trained = {layer: recorder.clean[layer].detach().clone() for layer in recorder.layers}
            module.train(False)
            _forward(net, module, Xi)
            evaluated = {layer: recorder.outputs[layer].detach() for layer in recorder.layers}
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for m, flag in flags.items():
            m.training = flag
    verdicts = {}
    for layer in recorder.layers:
        norms = upstream.get(layer, [])
        a, b = trained[layer].float(), evaluated[layer].float()
        diff = float((a - b).abs().max()) if a.numel() else 0.0
        if norms:
            verdicts[layer] = (False, f"{', '.join(map(repr, norms))} upstream of the latent "
                                      f"normalise{'s' if len(norms) == 1 else ''} with batch "
                                      "statistics in training mode")
        elif a.shape == b.shape and torch.allclose(a, b, rtol=TRAINING_PASS_RTOL,
                                                   atol=TRAINING_PASS_ATOL):
            verdicts[layer] = (True, f"one batch of {len(a)} gave the eval pass's latents in "
                                     f"training mode (max abs difference {diff:.2g})")
        else:
            verdicts[layer] = (False, f"one batch of {len(a)} gave other latents in training "
                                      f"mode (max abs difference {diff:.2g}): a dropout or "
                                      "another training-mode module upstream")
    return verdicts


def _forward(net, module: nn.Module, Xi) -> None:
    """Run ``module`` on a batch as skorch's ``infer`` does (inputs moved to the device)."""
    x = to_tensor(Xi, device=net.device)
    if isinstance(x, Mapping):
        module(**x)
    else:
        module(x)
