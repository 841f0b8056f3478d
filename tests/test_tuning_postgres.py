"""sklcc.tuning on a real PostgreSQL server: shared study, killed worker, heartbeat retry.

The fixture starts a throw-away PostgreSQL server (``initdb`` and ``pg_ctl`` must be on PATH;
the test fails rather than skips without them, so CI cannot silently lose it).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from sklearn.base import BaseEstimator, ClassifierMixin

from sklcc.tuning import LCCSearchCV
from sklcc.tuning.storage import open_storage

REPO = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = [
    pytest.mark.slow,  # a PostgreSQL server and worker processes: the slow lane
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]


# --------------------------------------------------------------------------- the server


def _run(command, **kwargs):
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                            **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")
    return result


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def postgres_url():
    """Yield the URL of an empty database on a fresh PostgreSQL server; stop and delete after.

    The server runs as the ``postgres`` user when the tests run as root (PostgreSQL refuses
    root), in its own temporary directory, with its socket there and on a free port of
    127.0.0.1, so tests in parallel xdist workers each get their own server.
    """
    missing = [name for name in ("initdb", "pg_ctl") if shutil.which(name) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not on PATH: these tests need the PostgreSQL "
                    "server binaries. Install PostgreSQL 15 (Debian/Ubuntu: apt-get install "
                    "postgresql-15) and put its bin folder (/usr/lib/postgresql/15/bin) on PATH.")
    try:
        import psycopg
    except ImportError:
        pytest.fail("psycopg is not installed; install the test extra: pip install -e '.[test]'")

    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="sklcc-pg-"))  # not tmp_path: root-only /tmp/pytest-of-root
    data, log = root / "data", root / "server.log"
    started = False
    try:
        if as_postgres:
            shutil.chown(root, "postgres", "postgres")
        _run([*as_postgres, "initdb", "-D", data, "-U", "postgres", "--auth=trust",
              "--no-sync", "--no-instructions", "-E", "UTF8"], cwd=root)
        for attempt in range(5):
            # Another process may take the port between the probe and the server's bind.
            port = _free_port()
            options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
            try:
                _run([*as_postgres, "pg_ctl", "-D", data, "-l", log, "-w", "-t", "30", "-o",
                      options, "start"], cwd=root)
                started = True
                break
            except RuntimeError:
                if attempt == 4:
                    raise RuntimeError(f"PostgreSQL did not start:\n{log.read_text()}") from None
        # The recipe of docs/tuning.md: a user owning the study's database.
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute("CREATE USER sklcc PASSWORD 'sklcc'")
            connection.execute("CREATE DATABASE lcc OWNER sklcc")
        yield f"postgresql+psycopg://sklcc:sklcc@127.0.0.1:{port}/lcc"
    finally:
        if started:
            subprocess.run([*as_postgres, "pg_ctl", "-D", str(data), "-m", "immediate", "-w",
                            "stop"], cwd=root, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- the workers


WORKER_SETUP = """
    import os, pathlib, time
    import numpy as np
    from optuna.distributions import FloatDistribution
    from optuna.pruners import NopPruner
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklcc.tuning import LCCSearchCV

    HERE = pathlib.Path(__file__).parent

    class Sleepy(ClassifierMixin, BaseEstimator):
        def __init__(self, x=0.0):
            self.x = x
        def fit(self, X, y):
            if os.environ.get("HANG"):  # the worker to kill: its first fit never ends
                (HERE / "started").touch()
                time.sleep(600)
            time.sleep(0.1)
            self.classes_ = np.unique(y)
            return self

    def neg_square(estimator, X, y):
        return -((estimator.x - 0.3) ** 2)

    def make_search():
        while os.environ.get("AFTER_HANG") and not (HERE / "started").exists():
            time.sleep(0.05)  # start once the doomed worker is stuck in its trial
        X = np.random.default_rng(0).normal(size=(30, 2))
        y = np.arange(30) % 3
        search = LCCSearchCV(Sleepy(), {"x": FloatDistribution(0, 1)}, n_trials=N_TRIALS,
                             cv=2, scoring=neg_square, pruner=NopPruner(),
                             heartbeat_interval=1, grace_period=3)
        return search, X, y
"""


class Fixed(ClassifierMixin, BaseEstimator):
    def __init__(self, x=0.0):
        self.x = x

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self


def neg_square(estimator, X, y):
    return -((estimator.x - 0.3) ** 2)


def start_worker(tmp_path, url, **env):
    return subprocess.Popen(
        [sys.executable, "-m", "sklcc.tuning", "worker", "--setup",
         f"{tmp_path / 'setup.py'}:make_search", "--storage", url, "--study", "pg"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_workers_share_a_postgres_study_and_a_killed_trial_is_retried(tmp_path, postgres_url):
    n_trials = 6
    (tmp_path / "setup.py").write_text(
        textwrap.dedent(WORKER_SETUP).replace("N_TRIALS", str(n_trials)))
    doomed = start_worker(tmp_path, postgres_url, HANG="1")
    steady = start_worker(tmp_path, postgres_url, AFTER_HANG="1")
    workers = [doomed, steady]
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert doomed.poll() is None, doomed.communicate()[0]
            assert time.monotonic() < deadline, "the doomed worker never started a trial"
            time.sleep(0.05)
        os.kill(doomed.pid, signal.SIGKILL)  # mid-trial: no chance to record anything
        doomed.wait()
        study = optuna.load_study(study_name="pg", storage=open_storage(postgres_url))
        # Its trial may already be failed as stale, and a retry (a copy of its user attributes,
        # so of its "worker" too) queued: that is what the rest of the test checks.
        (killed,) = [t for t in study.trials if "failed_trial" not in t.system_attrs
                     and t.user_attrs["worker"].endswith(f":{doomed.pid}")]
        assert killed.state in (TrialState.RUNNING, TrialState.FAIL)

        restarted = start_worker(tmp_path, postgres_url)
        workers.append(restarted)
        outputs = [worker.communicate(timeout=90)[0] for worker in (steady, restarted)]
        assert [steady.returncode, restarted.returncode] == [0, 0], outputs
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    study = optuna.load_study(study_name="pg", storage=open_storage(postgres_url))
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == n_trials, states
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING, TrialState.PRUNED))
    # The heartbeat failed the killed trial and queued a copy with its parameters, which ran.
    assert study.trials[killed.number].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.params == killed.params and retry.state == TrialState.COMPLETE
    assert retry.system_attrs["retry_history"] == [killed.number]
    assert not retry.user_attrs["worker"].endswith(f":{doomed.pid}")
    # Every other failure is a surplus trial a worker created in a race and never scored.
    surplus = [t for t in study.get_trials(states=(TrialState.FAIL,)) if t.number != killed.number]
    assert all("cv_folds" not in t.user_attrs for t in surplus)
    for output in outputs:
        assert f"{n_trials} finished trials" in output, output

    # A search in this process finds the study done: it runs no trial and refits the best.
    search = LCCSearchCV(Fixed(), {"x": FloatDistribution(0, 1)}, n_trials=n_trials, cv=2,
                         scoring=neg_square, storage=postgres_url, study_name="pg")
    search.fit(np.zeros((30, 2)), np.arange(30) % 3)
    assert len(search.study_.trials) == len(study.trials)
    assert list(search.cv_results_["state"]) == ["COMPLETE"] * n_trials
    assert search.best_score_ == max(t.value for t in study.trials if t.value is not None)
