"""Where the refresh takes its latents (lcc_latents) and the state its callback owns."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from skorch.callbacks import Callback

from sklcc import LCCClassifier
from sklcc._latent_buffer import LatentBuffer
from sklcc.diagnostics import SCHEDULE_KEYS, STAT_KEYS, history_key
from sklcc.latents import LatentRecorder

#: History keys that must be equal between two runs of the same seed (timings excluded).
SAME_KEYS = ["train_loss", "train_lcc", *(history_key(k) for k in STAT_KEYS + SCHEDULE_KEYS)]


class MLP(torch.nn.Module):
    def __init__(self, dropout=0.0):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU())
        self.dropout = torch.nn.Dropout(dropout)
        self.out = torch.nn.Linear(32, 10)

    def forward(self, x):
        return torch.softmax(self.out(self.dropout(self.hidden(x))), dim=-1)


class FixedLatent(torch.nn.Module):
    """Latent = the input itself, untouched by training: train and eval passes agree."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Identity()
        self.out = torch.nn.Linear(64, 10)

    def forward(self, x):
        return torch.softmax(self.out(self.embed(x)), dim=-1)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:500] / 16).astype(np.float32), y[:500]


def small(**kwargs):
    params = dict(module=MLP, lcc_layers=["hidden"], max_epochs=5, lr=0.1, batch_size=64,
                  lcc_warmup=1, train_split=None, random_state=0, verbose=0)
    return LCCClassifier(**{**params, **kwargs})


def same_history(a, b):
    for key in SAME_KEYS:
        assert [row.get(key) for row in a.history] == [row.get(key) for row in b.history], key


class FlagsPerEpoch(Callback):
    """Records the flags in use during each epoch (after the refresh callback ran)."""

    def initialize(self):
        self.flags = []
        return self

    def on_epoch_begin(self, net, **kwargs):
        states = net.lcc_states_
        self.flags.append(None if not states else states["hidden"].correct.copy())


class Interrupt(Callback):
    def __init__(self, at_epoch, error=KeyboardInterrupt):
        self.at_epoch, self.error = at_epoch, error

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.at_epoch:
            assert refresher(net)._buffer is not None  # training latents are being kept
            raise self.error("stop")


def refresher(net):
    """The net's refresh callback (which owns the schedule state)."""
    return dict(net.callbacks_)["lcc_refresh"]


class Pickle(Callback):
    """Pickles the net at every epoch's end, as a checkpoint would."""

    def on_epoch_end(self, net, **kwargs):
        self.blob = None
        self.blob = pickle.dumps(net)


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize("param, value", [("lcc_latents", "training"),
                                          ("lcc_latents", None)])
def test_bad_schedule_parameters_are_refused_by_name(digits, param, value):
    with pytest.raises(ValueError, match=f"{param}={value!r} is invalid: expected one of"):
        small(**{param: value}).fit(*digits)


# ---------------------------------------------------------------- lcc_latents="auto"


class Upstream(torch.nn.Module):
    """A module that behaves differently in training, then the latent layer ``hidden``."""

    def __init__(self, kind="none"):
        super().__init__()
        first = {"none": torch.nn.Identity(), "batch-norm": torch.nn.BatchNorm1d(64),
                 "dropout": torch.nn.Dropout(0.2)}[kind]
        self.hidden = torch.nn.Sequential(first, torch.nn.Linear(64, 32), torch.nn.ReLU())
        self.out = torch.nn.Linear(32, 10)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


def same_run(a, b):
    """Bit-identical training (history up to the latent source, weights, predictions)."""
    source = [history_key(k) for k in ("latents_source", "latents_reason")]
    for key in ["train_loss", "train_lcc", *(history_key(k) for k in STAT_KEYS + SCHEDULE_KEYS)]:
        if key not in source:
            assert [r.get(key) for r in a.history] == [r.get(key) for r in b.history], key
    for p, q in zip(a.module_.state_dict().values(), b.module_.state_dict().values(),
                    strict=True):
        assert torch.equal(p, q)


def test_auto_is_the_default_and_takes_the_training_latents_of_a_plain_mlp(digits):
    net = small(max_epochs=3).fit(*digits)  # no dropout, no batch-norm
    assert LCCClassifier(MLP).lcc_latents == "auto"
    assert net.lcc_latents_ == "train" and "eval pass's latents" in net.lcc_latents_reason_
    assert net.history[:, "lcc_latents_source"] == ["train"] * 2
    assert net.history[:, "lcc_latents_reason"] == [net.lcc_latents_reason_] * 2
    assert net.history[:, "lcc_latents_eval"] == [0.0] * 2  # no eval pass
    # deciding left the run alone: bit for bit the run of an explicit "train"
    same_run(net, small(max_epochs=3, lcc_latents="train").fit(*digits))


@pytest.mark.parametrize("kind, why", [("batch-norm", "'hidden.0' upstream of the latent "
                                                     "normalises with batch statistics"),
                                       ("dropout", "gave other latents in training mode")])
def test_auto_keeps_the_eval_pass_where_training_changes_the_latents(digits, kind, why):
    net = small(module=Upstream, module__kind=kind, max_epochs=3).fit(*digits)
    assert net.lcc_latents_ == "eval" and why in net.lcc_latents_reason_
    assert net.history[:, "lcc_latents_source"] == ["eval"] * 2
    assert net.history[:, "lcc_latents_eval"] == [1.0] * 2
    # the comparison restored the running statistics, the flags and the random state
    same_run(net, small(module=Upstream, module__kind=kind, max_epochs=3,
                        lcc_latents="eval").fit(*digits))


def test_auto_takes_training_latents_behind_a_dropout_that_feeds_the_latent(digits):
    # LatentRecorder undoes a dropout feeding the latent directly, as the eval pass would.
    net = small(module__dropout=0.5, lcc_layers=["out:input"], max_epochs=2).fit(*digits)
    assert net.lcc_latents_ == "train"
    net = small(module__dropout=0.5, lcc_layers=["dropout"], max_epochs=2)
    assert net.fit(*digits).lcc_latents_ == "train"  # the dropout's own output: undone too


def test_explicit_sources_are_recorded_as_given(digits):
    net = small(max_epochs=2, lcc_latents="eval").fit(*digits)
    assert net.lcc_latents_ == "eval" and net.lcc_latents_reason_ == "lcc_latents='eval' given"
    assert net.history[-1, "lcc_latents_source"] == "eval"


def test_auto_with_several_layers(digits):
    net = small(module=Upstream, module__kind="batch-norm", lcc_layers=["hidden", "out"],
                max_epochs=3).fit(*digits)
    # one layer needing the eval pass makes both take it (the pass is paid anyway)
    assert net.lcc_latents_ == "eval"
    assert "hidden: " in net.lcc_latents_reason_ and "out: " in net.lcc_latents_reason_


# ---------------------------------------------------------------- the latent buffer


def test_buffer_keeps_detached_float32_rows_at_their_positions():
    buffer = LatentBuffer(5)
    z = torch.arange(6, dtype=torch.float64, requires_grad=True).reshape(3, 2)
    buffer.add(torch.tensor([4, 0, 2]), {"a": z * 1}, torch.tensor([7, 8, 9]))
    latents, y = buffer.arrays()
    assert latents["a"].dtype == np.float32
    assert latents["a"][[4, 0, 2]].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert y[[4, 0, 2]].tolist() == [7, 8, 9]
    assert buffer.missing().tolist() == [1, 3]


def test_train_latents_cluster_like_the_eval_pass_where_both_see_the_same_latents(digits):
    # With latents the training cannot move, the training passes hold exactly what the
    # eval pass would compute, so the runs agree bit for bit, without the eval pass.
    kw = dict(module=FixedLatent, lcc_layers=["embed"], max_epochs=4)
    ev = small(**kw, lcc_latents="eval").fit(*digits)
    tr = small(**kw, lcc_latents="train").fit(*digits)
    source = [history_key(k) for k in ("latents_eval", "latents_source", "latents_reason")]
    for key in SAME_KEYS:
        if key not in source:
            assert ev.history[:, key] == tr.history[:, key], key
    assert tr.history[:, "lcc_latents_eval"] == [0.0] * 3
    assert ev.history[:, "lcc_latents_eval"] == [1.0] * 3


def test_samples_the_epoch_did_not_see_come_from_the_eval_pass(digits):
    kw = dict(module=FixedLatent, lcc_layers=["embed"], max_epochs=3, batch_size=64,
              iterator_train__shuffle=True, iterator_train__drop_last=True)
    ev = small(**kw, lcc_latents="eval").fit(*digits)
    tr = small(**kw, lcc_latents="train").fit(*digits)
    assert tr.history[:, "lcc_latents_eval"] == [(500 % 64) / 500] * 2
    for layer, state in ev.lcc_states_.items():
        np.testing.assert_array_equal(state.correct, tr.lcc_states_[layer].correct)


def test_a_refresh_with_no_epoch_before_it_uses_the_eval_pass(digits):
    net = small(lcc_warmup=0, max_epochs=3, lcc_latents="train").fit(*digits)
    assert net.history[:, "lcc_latents_eval"] == [1.0, 0.0, 0.0]
    assert net.history[:, "lcc_latents_epoch"] == [0, 1, 2]


def test_train_latents_are_what_the_hooks_saw_in_training(digits):
    class Spy(Callback):
        def on_batch_end(self, net, batch=None, training=False, **kwargs):
            if training and refresher(net)._buffer is not None:
                self.last = (batch[2].numpy(), net.fit_state_.recorder.outputs["hidden"]
                             .detach().numpy().copy())
                self.buffer = refresher(net)._buffer

    spy = Spy()
    small(module__dropout=0.5, max_epochs=2, lcc_latents="train",
          callbacks=[("spy", spy)]).fit(*digits)
    index, z = spy.last
    np.testing.assert_array_equal(spy.buffer.arrays()[0]["hidden"][index], z)


def test_recorder_undoes_a_dropout_that_feeds_the_latent():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                              torch.nn.Linear(6, 2))
    x = torch.randn(32, 4)
    before = net[:2](x)  # what the eval pass computes at the layers around the dropout
    with LatentRecorder(net, ["3:input", "2", "1"], undo_dropout=True) as rec:
        net.train()(x)
        masked = rec.outputs["3:input"]
        assert (masked == 0).any() and not torch.equal(masked, before)
        for layer in ("3:input", "2", "1"):  # after, at and before the dropout
            assert torch.equal(rec.clean[layer], before), layer
        net.eval()(x)  # eval mode: nothing to undo
        assert rec.clean["3:input"] is rec.outputs["3:input"]
    with LatentRecorder(net, ["3:input"]) as rec:  # undo_dropout off: the latent as it is
        net.train()(x)
        assert rec.clean["3:input"] is rec.outputs["3:input"]
    net[2].inplace = True  # an in-place dropout leaves no input to take
    with LatentRecorder(net, ["3:input"], undo_dropout=True) as rec:
        net.train()(x)
        assert rec.clean["3:input"] is rec.outputs["3:input"]


def test_train_latents_after_a_dropout_are_the_eval_pass_latents(digits):
    # The default layer's pattern (the input of the last Linear, right after a dropout):
    # with "train" the buffer keeps the dropout's input; with the weights held still
    # (lr=0) that is what the eval pass computes, and the loss still sees the mask.
    class Spy(Callback):
        def on_batch_end(self, net, batch=None, training=False, **kwargs):
            if training and refresher(net)._buffer is not None:
                self.index = batch[2].numpy()
                self.masked = net.fit_state_.recorder.outputs["out:input"].detach().numpy()
                self.buffer = refresher(net)._buffer

    spy = Spy()
    net = small(module__dropout=0.5, lcc_layers=None, max_epochs=2, lr=0.0,
                lcc_latents="train", callbacks=[("spy", spy)]).fit(*digits)
    assert net.lcc_layers_ == ["out:input"]
    X = torch.from_numpy(digits[0][spy.index])
    with torch.no_grad():
        expected = net.module_.eval().hidden(X).numpy()
    kept = spy.buffer.arrays()[0]["out:input"][spy.index]
    np.testing.assert_allclose(kept, expected, rtol=1e-6, atol=1e-6)
    assert (spy.masked == 0).sum() > (kept == 0).sum()  # the loss's latents were masked


# ---------------------------------------------------------------- the callback's state


def test_the_refresh_time_covers_its_steps(digits):
    net = small(max_epochs=3).fit(*digits)
    steps = ["lcc_latents_s", "lcc_graph_s", "lcc_communities_s", "lcc_assign_s",
             "lcc_index_s"]
    for row in net.history[1:]:
        assert "lcc_blocked_s" not in row  # removed with the overlap mode: it was refresh_s
        assert sum(row[key] for key in steps) <= row["lcc_refresh_s"] + 0.05


def test_the_callback_owns_the_schedule_state_and_the_net_does_not(digits):
    net = small(max_epochs=3, lcc_latents="train")
    seen = []

    class Look(Callback):
        def on_epoch_end(self, net, **kwargs):
            seen.append((refresher(net)._latent_source, refresher(net)._buffer is not None,
                         sorted(vars(net.fit_state_))))

    net.set_params(callbacks=[("look", Look())]).fit(*digits)
    assert [s[:2] for s in seen] == [(("train", "lcc_latents='train' given"), True)] * 2 + [
        (("train", "lcc_latents='train' given"), False)]  # no refresh after the last epoch
    assert seen[0][2] == ["batch_index", "blas_threads", "output_checked", "recorder",
                          "stop_epoch"]
    assert refresher(net)._buffer is None  # dropped when the fit ends


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_fit_refits_like_a_fresh_one(digits, error):
    net = small(max_epochs=6, lcc_latents="train", callbacks=[("stop", Interrupt(3, error))])
    if error is KeyboardInterrupt:  # skorch ends the fit early, as if it were complete
        net.fit(*digits)
        assert len(net.history) == 3
    else:
        with pytest.raises(RuntimeError, match="stop"):
            net.fit(*digits)
    assert not hasattr(net, "fit_state_")
    net.set_params(callbacks__stop=None).fit(*digits)
    fresh = small(max_epochs=6, lcc_latents="train").fit(*digits)
    same_history(net, fresh)
    np.testing.assert_array_equal(net.predict_proba(digits[0]), fresh.predict_proba(digits[0]))


def test_net_pickles_mid_fit_without_the_buffer_and_partial_fit_goes_on(digits):
    net = small(max_epochs=3, lcc_latents="train", callbacks=[("pickle", Pickle())])
    net.fit(*digits)
    restored = pickle.loads(dict(net.callbacks_)["pickle"].blob)
    assert not hasattr(restored, "fit_state_")
    assert refresher(restored)._buffer is None
    net.partial_fit(*digits)
    assert len(net.history) == 6
    # the first refresh of the partial fit has no epoch of it behind it: an eval pass
    assert net.history[:, "lcc_latents_epoch"] == [1, 2, 3, 4, 5]
    assert net.history[:, "lcc_latents_eval"] == [0.0, 0.0, 1.0, 0.0, 0.0]
