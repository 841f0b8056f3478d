"""A study-wide trial quota, so that any number of workers share one ``n_trials`` target.

``Study.optimize(n_trials=...)`` counts the trials of one process: two workers asked for 20
each run 40. Here ``n_trials`` is the number of finished (complete or pruned) trials the study
should hold, whoever runs them, and each new trial first checks that it still fits in it.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import Trial, TrialState
from tqdm.auto import tqdm

__all__ = ["FINISHED", "QuotaFilled", "run_until_quota"]

#: Trial states that count towards the quota.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# A trial in one of these states will finish unless its worker dies, so it holds a quota slot.
_HOLDING = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)


class QuotaFilled(RuntimeError):
    """Raised in a trial that other workers' trials left no room for; it is recorded as failed."""


def run_until_quota(
    study: optuna.Study,
    objective: Callable[[Trial], float],
    n_trials: int,
    *,
    poll_interval: float | None = None,
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
        Number of complete or pruned trials the study should hold when this returns.
    poll_interval : float or None, default=None
        Seconds between looks at the storage while other workers run the last trials; ``None``
        returns instead of waiting.
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
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def guarded(trial: Trial) -> float:
        trial.set_user_attr("worker", worker)
        # Numbers follow creation order, so counting the slot holders below this trial gives
        # every trial one verdict that no later trial can change: at most n_trials finish.
        earlier = trial.study.get_trials(deepcopy=False, states=_HOLDING)
        if sum(t.number < trial.number for t in earlier) >= n_trials:
            raise QuotaFilled(
                f"the study already holds its n_trials={n_trials} trials (other workers took "
                "the last ones); this surplus trial is discarded"
            )
        return objective(trial)

    with tqdm(total=n_trials, desc="trials", disable=not show_progress_bar) as bar:
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # no-op without a heartbeat
            trials = study.get_trials(deepcopy=False)
            states = [t.state for t in trials]
            n_finished = sum(state in FINISHED for state in states)
            values = [t.value for t in trials if t.state == TrialState.COMPLETE]
            if values:
                bar.set_postfix(best=f"{max(values):.4g}", refresh=False)
            bar.update(min(n_finished, n_trials) - bar.n)
            if n_finished >= n_trials:
                return
            if n_finished + states.count(TrialState.RUNNING) >= n_trials:
                if poll_interval is None:
                    return
                time.sleep(poll_interval)
                continue
            study.optimize(guarded, n_trials=1, catch=(QuotaFilled,))
