"""Where each run came from, and whether runs may be pooled into one table.

Every run file records its provenance (:func:`run_provenance`): the commit and whether
the tree was clean, the package that was imported, the library versions, the machine's
load when the run started and how much of the CPU other processes took during it, the
estimator's full configuration and the kNN and Louvain engines that actually ran (read
from the refresh history). :func:`check_poolable` refuses to summarise runs of one method
whose configuration or engines differ, naming them, unless told to.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sklcc.diagnostics import ENGINE_KEYS, history_key

__all__ = ["CpuShare", "check_poolable", "commits_of", "estimator_config", "git_state",
           "run_engines", "run_provenance"]

#: Libraries whose versions can change a run's numbers.
LIBRARIES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "skorch", "faiss-cpu",
             "hnswlib", "networkit", "networkx")

#: Estimator parameters that say nothing about how a method trains (the seed differs
#: by design; callbacks hold the test data and progress bars).
_UNPOOLED = ("random_state", "callbacks", "verbose")


def git_state(folder: Path) -> dict[str, Any]:
    """Commit of the tree holding ``folder`` and whether tracked files differ from it.

    Parameters
    ----------
    folder : Path
        Any folder inside the working tree.

    Returns
    -------
    dict
        ``git_commit`` (None outside a repository) and ``git_dirty`` (True when tracked
        files have uncommitted changes, so the commit alone does not name the code).

    """
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, cwd=folder).stdout.strip()
        dirty = bool(subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
            text=True, check=True, cwd=folder).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def _versions() -> dict[str, str | None]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from ``/proc/stat``; None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class CpuShare:
    """Share of the machine's CPU time that other processes took during a block.

    On Linux, the busy jiffies of all CPUs (``/proc/stat``) minus this process's own
    CPU time, over the block's total CPU time: 0 on a quiet machine, 0.5 when another
    job kept one of two cores busy. ``None`` where ``/proc/stat`` is missing.

    Attributes
    ----------
    load_average_start : list of float or None
        ``os.getloadavg()`` on entry.
    other_share : float or None
        Set on exit.

    """

    def __enter__(self) -> CpuShare:
        self.load_average_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        self._start = _cpu_jiffies()
        self._self_start = os.times()
        return self

    def __exit__(self, *exc) -> None:
        end, self_end = _cpu_jiffies(), os.times()
        self.other_share = None
        if self._start is None or end is None:
            return
        ticks = os.sysconf("SC_CLK_TCK")
        busy = (end[0] - self._start[0]) / ticks
        total = (end[1] - self._start[1]) / ticks
        own = sum(self_end[:4]) - sum(self._self_start[:4])  # user + sys, with children
        if total > 0:
            self.other_share = max(0.0, (busy - own) / total)


def estimator_config(net) -> dict[str, str]:
    """Describe the estimator by its class and parameters, as comparable strings.

    Parameters
    ----------
    net : skorch.NeuralNet
        The (fitted or unfitted) estimator of a run.

    Returns
    -------
    dict of str to str
        ``{"class": ..., <param>: repr(value)}`` for every public parameter but the
        seed, the callbacks and verbosity; classes and functions by their qualified names.

    Examples
    --------
    >>> import torch
    >>> from sklcc import LCCClassifier
    >>> cfg = estimator_config(LCCClassifier(torch.nn.Linear, lcc_weight=0.5, random_state=3))
    >>> cfg["class"], cfg["lcc_weight"], cfg["module"], "random_state" in cfg
    ('sklcc.classifier.LCCClassifier', '0.5', 'torch.nn.modules.linear.Linear', False)

    """

    def name(value: Any) -> str:
        if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__"):
            return f"{value.__module__}.{value.__qualname__}"
        return repr(value)

    params = net.get_params(deep=False)
    out = {"class": name(type(net))}
    # skorch's private bookkeeping (``_params_to_validate``, a set) is left out: it is
    # not a setting, and a set's repr changes from process to process.
    out.update({k: name(v) for k, v in sorted(params.items())
                if k not in _UNPOOLED and not k.startswith("_")})
    return out


def run_engines(refreshes: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """List the engines a run's refreshes actually used, from their history keys.

    Parameters
    ----------
    refreshes : sequence of mapping
        The run's refresh rows (history keys such as ``lcc_knn_algorithm``).

    Returns
    -------
    dict of str to list of str
        Per engine key (``knn_algorithm``, ``louvain_backend``), the sorted distinct
        values; empty for a method without refreshes.

    Examples
    --------
    >>> run_engines([{"lcc_knn_algorithm": "brute", "lcc_louvain_backend": "networkit"},
    ...              {"lcc_knn_algorithm": "hnsw", "lcc_louvain_backend": "networkit"}])
    {'louvain_backend': ['networkit'], 'knn_algorithm': ['brute', 'hnsw']}

    """
    out = {}
    for key in ENGINE_KEYS:
        values = sorted({str(r[history_key(key)]) for r in refreshes
                         if r.get(history_key(key)) is not None})
        if values:
            out[key] = values
    return out


def run_provenance(net, refreshes: Sequence[Mapping[str, Any]], cpu: CpuShare) -> dict[str, Any]:
    """Everything a report needs to trust a run: code, libraries, engines, machine load.

    Parameters
    ----------
    net : skorch.NeuralNet
        The fitted estimator.
    refreshes : sequence of mapping
        The run's refresh rows.
    cpu : CpuShare
        The block the fit ran in.

    Returns
    -------
    dict
        ``git_commit``, ``git_dirty``, ``sklcc_path`` (the package that was imported:
        a worktree's own, not an installed copy), ``versions``, ``load_average_start``,
        ``other_cpu_share``, ``method_config`` and ``engines``.

    """
    import sklcc

    return {
        **git_state(Path(sklcc.__file__).resolve().parent),
        "sklcc_path": str(Path(sklcc.__file__).resolve().parent),
        "versions": _versions(),
        "load_average_start": cpu.load_average_start,
        "other_cpu_share": cpu.other_share,
        "method_config": estimator_config(net),
        "engines": run_engines(refreshes),
    }


def commits_of(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Which runs came from which commit.

    Parameters
    ----------
    runs : sequence of mapping
        Run records.

    Returns
    -------
    dict of str to list of str
        ``{commit (+ " (uncommitted changes)") or "not recorded": ["method seed N", ...]}``.

    Examples
    --------
    >>> commits_of([{"method": "ce", "seed": 0, "provenance": {"git_commit": "abc",
    ...              "git_dirty": False}}, {"method": "lcc", "seed": 0}])
    {'abc': ['ce seed 0'], 'not recorded': ['lcc seed 0']}

    """
    out: dict[str, list[str]] = {}
    for run in runs:
        prov = run.get("provenance") or {}
        commit = prov.get("git_commit") or "not recorded"
        if prov.get("git_dirty"):
            commit += " (uncommitted changes)"
        out.setdefault(commit, []).append(f"{run['method']} seed {run['seed']}")
    return out


def _config_and_engines(run: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    prov = run.get("provenance") or {}
    engines = prov.get("engines", run_engines(run.get("refreshes", [])))
    return prov.get("method_config") or {}, engines, prov.get("versions") or {}


def check_poolable(runs: Sequence[Mapping[str, Any]], allow_mixed: bool = False) -> list[str]:
    """Refuse to pool runs of one method that differ in configuration, engines or libraries.

    Runs that recorded no configuration (older run files) are compared by their
    engines alone; a library version counts where both runs recorded it.

    Parameters
    ----------
    runs : sequence of mapping
        Run records (``method``, ``seed``, ``refreshes`` and, where recorded,
        ``provenance``).
    allow_mixed : bool, default=False
        Report the differences instead of raising.

    Returns
    -------
    list of str
        One line per method whose runs differ, naming the seeds and what differs
        (empty when every method is uniform); only returned with ``allow_mixed=True``.

    Raises
    ------
    ValueError
        Naming the runs and what differs, when ``allow_mixed`` is False.

    Examples
    --------
    >>> a = {"method": "lcc", "seed": 0, "refreshes": [{"lcc_knn_algorithm": "brute"}]}
    >>> b = {"method": "lcc", "seed": 1, "refreshes": [{"lcc_knn_algorithm": "hnsw"}]}
    >>> check_poolable([a, b], allow_mixed=True)
    ["lcc: seed 0: knn_algorithm=['brute']; seed 1: knn_algorithm=['hnsw']"]

    """
    problems = []
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = sorted((r for r in runs if r["method"] == method), key=lambda r: r["seed"])
        records = {r["seed"]: _config_and_engines(r) for r in mine}
        seeds = list(records)
        differing = []
        for part in (0, 1, 2):
            keys = sorted({k for rec in records.values() for k in rec[part]})
            if part == 2:  # versions: only between runs that recorded them
                keys = [k for k in keys if all(records[s][2] for s in seeds)]
            differing += [(part, k) for k in keys
                          if len({repr(records[s][part].get(k)) for s in seeds}) > 1]
        if not differing:
            continue
        groups: dict[str, list[int]] = {}
        for seed in seeds:
            text = ", ".join(f"{k}={records[seed][part].get(k, 'not recorded')}"
                             for part, k in differing)
            groups.setdefault(text, []).append(seed)
        problems.append(f"{method}: " + "; ".join(
            f"seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}: {text}"
            for text, s in groups.items()))
    if problems and not allow_mixed:
        raise ValueError(
            "runs that differ in method configuration, engines or library versions would "
            "be pooled into one table:\n  " + "\n  ".join(problems) + "\nrerun them alike, or pass "
            "--allow-mixed-runs to report them together with this list."
        )
    return problems
