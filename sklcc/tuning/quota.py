"""A study-wide trial quota, so that any number of workers share one ``n_trials`` target.

``Study.optimize(n_trials=...)`` counts the trials of one process: two workers asked for 20
each run 40. Here ``n_trials`` is the number of finished trials the study should hold, whoever
runs them, and each new trial first checks that it still fits in it. A finished trial is a
complete or pruned one, or one its objective failed on purpose with :class:`TrialFailed` (its
parameters cannot be fitted); a trial that failed because its worker died or was interrupted
does not count, so that it is run again.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, Trial, TrialState
from tqdm.auto import tqdm

__all__ = ["ERROR", "QuotaFilled", "TrialFailed", "finished_trials", "is_finished",
           "run_until_quota"]

#: The user attribute in which a trial failed by :class:`TrialFailed` keeps its error message.
ERROR = "error"
# A trial in one of these states will finish unless its worker dies, so it holds a quota slot.
_PENDING = (TrialState.RUNNING, TrialState.WAITING)


class QuotaFilled(RuntimeError):
    """Raised in a trial that other workers' trials left no room for; it is recorded as failed.

    :func:`run_until_quota` raises it at the start of a trial, before the objective, when the
    trials created before that one already fill ``n_trials``, and catches it. The trial is
    recorded as ``FAIL`` without the ``error`` user attribute, so it does not count towards the
    quota. Objectives never need to raise it.

    See Also
    --------
    sklcc.tuning.quota.run_until_quota : Raises it in a surplus trial and catches it.
    sklcc.tuning.quota.TrialFailed : The failure that counts towards the quota.

    Examples
    --------
    Caught as :func:`run_until_quota` catches it, it fails the trial, which does not count:

    >>> import optuna
    >>> from sklcc.tuning.quota import QuotaFilled, is_finished
    >>> optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials log tracebacks
    >>> def surplus(trial):
    ...     raise QuotaFilled("the study already holds its n_trials trials")
    >>> study = optuna.create_study()
    >>> study.optimize(surplus, n_trials=1, catch=(QuotaFilled,))
    >>> study.trials[0].state.name, is_finished(study.trials[0])
    ('FAIL', False)

    """


class TrialFailed(RuntimeError):
    """Raise from an objective to fail its trial for good: its parameters cannot be scored.

    The trial is recorded as ``FAIL`` with the message in its ``error`` user attribute, counts
    towards ``n_trials`` like a complete one, and the search goes on with the next trial.

    See Also
    --------
    sklcc.tuning.quota.run_until_quota : Catches it and records the trial.
    sklcc.tuning.quota.is_finished : Counts a trial failed with it as finished.
    optuna.TrialPruned : Optuna's exception that stops a trial early (recorded as pruned).

    Examples
    --------
    >>> import optuna
    >>> from sklcc.tuning.quota import ERROR, TrialFailed, run_until_quota
    >>> optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials log tracebacks
    >>> def objective(trial):
    ...     raise TrialFailed("these parameters cannot be scored")
    >>> study = optuna.create_study()
    >>> run_until_quota(study, objective, 2)
    >>> [trial.state.name for trial in study.trials], study.trials[0].user_attrs[ERROR]
    (['FAIL', 'FAIL'], 'these parameters cannot be scored')

    """


def is_finished(trial: FrozenTrial) -> bool:
    """Tell whether ``trial`` counts towards the quota.

    Parameters
    ----------
    trial : optuna.trial.FrozenTrial
        Any trial of the study.

    Returns
    -------
    bool
        ``True`` for a complete or pruned trial, and for a failed one whose objective raised
        :class:`TrialFailed`; ``False`` for running and waiting trials, and for trials that
        failed because their worker died, was interrupted or lost the race for the last slot.

    """
    if trial.state == TrialState.FAIL:
        return ERROR in trial.user_attrs
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED)


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Return the trials of ``study`` that count towards the quota, in trial order.

    Parameters
    ----------
    study : optuna.Study
        The study, in any storage.

    Returns
    -------
    list of optuna.trial.FrozenTrial
        The trials for which :func:`is_finished` is true.

    """
    return [t for t in study.get_trials(deepcopy=False) if is_finished(t)]


def run_until_quota(
    study: optuna.Study,
    objective: Callable[[Trial], float],
    n_trials: int,
    *,
    poll_interval: float | None = None,
    timeout: float | None = None,
    show_progress_bar: bool = False,
) -> None:
    """Run trials in this process until ``study`` holds ``n_trials`` finished trials.

    Every worker on a shared storage calls this with the same ``n_trials``; between them they
    finish exactly ``n_trials`` trials. A trial that another worker is still running counts as
    taken. With ``poll_interval`` set (storages whose heartbeat detects dead workers), this
    worker waits for such trials, and once a dead worker's trial goes stale, Optuna fails it and
    this worker runs its re-queued copy. Without it, this worker stops and leaves them to their
    workers.

    Parameters
    ----------
    study : optuna.Study
        The study, in any storage.
    objective : callable
        ``objective(trial) -> float``, as for :meth:`optuna.Study.optimize`.
    n_trials : int
        Number of finished trials (see :func:`is_finished`) the study should hold when this
        returns.
    poll_interval : float or None, default=None
        Seconds between looks at the storage while other workers run the last trials; ``None``
        returns instead of waiting.
    timeout : float or None, default=None
        Start no new trial, and stop waiting for other workers' trials, once this many
        seconds have passed since the call began, as :meth:`optuna.Study.optimize` does; the
        study may then hold fewer than ``n_trials`` finished trials. A running trial is never
        interrupted. ``None`` runs until the quota is filled.
    show_progress_bar : bool, default=False
        Show a tqdm bar of the study's finished trials.

    Examples
    --------
    >>> import optuna
    >>> from sklcc.tuning.quota import run_until_quota
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(direction="maximize")
    >>> run_until_quota(study, lambda trial: trial.suggest_float("x", 0, 1), 3)
    >>> run_until_quota(study, lambda trial: trial.suggest_float("x", 0, 1), 3)  # already there
    >>> len(study.trials)
    3

    """
    start = time.monotonic()
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def guarded(trial: Trial) -> float:
        trial.set_user_attr("worker", worker)
        # Numbers follow creation order, so counting the slot holders below this trial gives
        # every trial one verdict that no later trial can change: at most n_trials finish.
        earlier = trial.study.get_trials(deepcopy=False)
        if sum(t.number < trial.number and (t.state in _PENDING or is_finished(t))
               for t in earlier) >= n_trials:
            raise QuotaFilled(
                f"the study already holds its n_trials={n_trials} trials (other workers took "
                "the last ones); this surplus trial is discarded"
            )
        try:
            return objective(trial)
        except TrialFailed as err:
            trial.set_user_attr(ERROR, str(err))
            raise

    with tqdm(total=n_trials, desc="trials", disable=not show_progress_bar) as bar:
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # no-op without a heartbeat
            trials = study.get_trials(deepcopy=False)
            n_finished = sum(map(is_finished, trials))
            values = [t.value for t in trials if t.state == TrialState.COMPLETE]
            if values:
                bar.set_postfix(best=f"{max(values):.4g}", refresh=False)
            bar.update(min(n_finished, n_trials) - bar.n)
            if n_finished >= n_trials:
                return
            if timeout is not None and time.monotonic() - start >= timeout:
                return
            n_running = sum(t.state == TrialState.RUNNING for t in trials)
            if n_finished + n_running >= n_trials:
                if poll_interval is None:
                    return
                time.sleep(poll_interval)
                continue
            study.optimize(guarded, n_trials=1, catch=(QuotaFilled, TrialFailed))
