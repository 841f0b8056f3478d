"""Where a tuning study lives: turn a storage URL into an Optuna storage."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, JournalStorage, RDBStorage

try:  # Optuna 5 renamed the callback that re-queues a stale trial
    from optuna.storages import RetryHeartbeatStaleTrialCallback as _RetryStale
except ImportError:  # Optuna 4
    from optuna.storages import RetryFailedTrialCallback as _RetryStale
from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

__all__ = ["open_storage"]

_STORAGE_FORMS = (
    "None (in memory, this process only), an SQLAlchemy database URL such as "
    "'sqlite:///lcc.db' or 'postgresql+psycopg://user:password@host/dbname', a "
    "'redis://host:port' URL (Optuna journal on Redis), or the path of an Optuna journal file "
    "such as 'lcc.log'"
)
# A stale trial (its worker died) is re-queued this many times before it is left failed, so
# a trial that itself kills its worker (out of memory, say) cannot stall a study forever.
_MAX_RETRY = 3


def open_storage(
    storage: str | BaseStorage | None,
    *,
    heartbeat_interval: int = 10,
    grace_period: int | None = None,
) -> BaseStorage | None:
    """Open the Optuna storage a study lives in.

    Parameters
    ----------
    storage : str, optuna.storages.BaseStorage or None
        ``None`` keeps the study in memory. A URL with a scheme is an SQLAlchemy database
        (``sqlite:///lcc.db`` on one machine; ``postgresql+psycopg://...`` or
        ``mysql+pymysql://...`` across machines); ``redis://...`` is an Optuna journal on Redis;
        a plain path (``lcc.log``) is an Optuna journal file, which a shared file system makes
        usable across machines. A storage object is returned unchanged.
    heartbeat_interval : int, default=10
        Seconds between the heartbeats a worker records for its running trial, database
        storages only. A trial whose heartbeat stops for ``grace_period`` seconds (its worker
        was killed) is marked failed and queued again with the same parameters.
    grace_period : int or None, default=None
        Seconds without a heartbeat after which a running trial counts as dead; ``None`` means
        twice ``heartbeat_interval``.

    Returns
    -------
    optuna.storages.BaseStorage or None
        The storage to hand to :func:`optuna.create_study`.

    Raises
    ------
    ValueError
        If the URL cannot be opened; the message names the URL and the accepted forms.

    Examples
    --------
    >>> from sklcc.tuning.storage import open_storage
    >>> storage = open_storage("sqlite://")  # an SQLite database in memory
    >>> storage.get_heartbeat_interval()
    10

    """
    if storage is None or isinstance(storage, BaseStorage):
        return storage
    if not isinstance(storage, str):
        raise TypeError(f"storage must be a URL string, got {type(storage).__name__}: expected "
                        f"{_STORAGE_FORMS}.")
    if storage.startswith(("redis://", "rediss://", "unix://")):
        return _open_redis_journal(storage)
    if "://" not in storage:
        return _open_journal_file(storage)
    return _open_database(storage, heartbeat_interval, grace_period)


def _open_database(url: str, heartbeat_interval: int, grace_period: int | None) -> RDBStorage:
    import sqlalchemy.exc

    engine_kwargs = {}
    if url.startswith("sqlite"):
        # Several worker processes write one SQLite file; wait for its lock instead of failing
        # after SQLite's default five seconds.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                # Heartbeats and their retry callback are marked experimental in Optuna.
                warnings.simplefilter("ignore", ExperimentalWarning)
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=_RetryStale(max_retry=_MAX_RETRY),
                )
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as err:
            # Workers started together race to create the schema of a new database; the loser
            # finds it made on its next try.
            racing = isinstance(err, sqlalchemy.exc.IntegrityError) or any(
                words in str(err) for words in ("already exists", "database is locked"))
            if racing and attempt < 4:
                time.sleep(0.5)
                continue
            raise _bad_url(url, err) from err
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as err:
            raise _bad_url(url, err) from err
    raise AssertionError("unreachable")


def _open_journal_file(path: str) -> JournalStorage:
    suffix = Path(path).suffix.lower()
    if suffix in {".db", ".sqlite", ".sqlite3"}:
        raise ValueError(
            f"storage={path!r} looks like an SQLite database but has no URL scheme, so it would "
            f"be read as an Optuna journal file. Write storage='sqlite:///{path}' for SQLite, "
            "or give the journal file another suffix such as '.log'."
        )
    if not Path(path).parent.is_dir():
        raise ValueError(
            f"storage={path!r}: the folder {str(Path(path).parent)!r} of this journal file does "
            f"not exist; create it first. Accepted storages: {_STORAGE_FORMS}."
        )
    return JournalStorage(JournalFileBackend(path))


def _open_redis_journal(url: str) -> JournalStorage:
    try:
        return JournalStorage(JournalRedisBackend(url))
    except (ImportError, ValueError, optuna.exceptions.OptunaError) as err:
        raise _bad_url(url, err) from err


def _bad_url(url: str, err: BaseException) -> ValueError:
    return ValueError(
        f"Cannot open the Optuna storage {url!r} ({type(err).__name__}: {err}). "
        f"Expected {_STORAGE_FORMS}; for a database URL, check the scheme, that its driver is "
        "installed, and that the folder or server exists."
    )
