"""How the benchmark measures: peak memory of a fit, and the machine it ran on."""

from __future__ import annotations

import math
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from .provenance import git_state

__all__ = ["MEMORY_NOTES", "PeakMemory", "machine_info"]


class PeakMemory:
    """Peak memory of the process during a block.

    On Linux the kernel's peak resident set size (``VmHWM`` in ``/proc/self/status``)
    is reset on entry by writing ``5`` to ``/proc/self/clear_refs``, so the value read
    on exit is the peak of this block. Elsewhere it falls back to
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the peak of the whole process so
    far. CUDA's allocator peak is reset and read as well on a GPU.

    Attributes
    ----------
    method : str
        How the peak was measured (``"VmHWM"`` or ``"ru_maxrss"``).
    start_rss_mb, peak_rss_mb : float
        Resident set size on entry, and peak during the block, in MiB.
    cuda_peak_mb : float or None
        ``torch.cuda.max_memory_allocated`` during the block, in MiB.

    """

    def __init__(self, device: str):
        self.device = device

    @staticmethod
    def _status_kb(key: str) -> float | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return float(line.split()[1])
        except OSError:
            return None
        return None

    def __enter__(self) -> PeakMemory:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM" if self._status_kb("VmHWM") is not None else "ru_maxrss"
        except OSError:
            self.method = "ru_maxrss"
        rss = self._status_kb("VmRSS")
        self.start_rss_mb = math.nan if rss is None else rss / 1024
        self.cuda = self.device.startswith("cuda") and torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc) -> None:
        if self.method == "VmHWM":
            self.peak_rss_mb = self._status_kb("VmHWM") / 1024
        else:  # kilobytes on Linux, bytes on macOS
            scale = 1024 * 1024 if sys.platform == "darwin" else 1024
            self.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
        self.cuda_peak_mb = (torch.cuda.max_memory_allocated() / 2**20) if self.cuda else None


MEMORY_NOTES = {
    "VmHWM": "peak resident set size of the whole process during each fit (VmHWM of "
             "/proc/self/status, reset before the fit through /proc/self/clear_refs); it "
             "includes the data and libraries already loaded, so the increase over the RSS "
             "at fit start is the fit's own share.",
    "ru_maxrss": "resource.getrusage(RUSAGE_SELF).ru_maxrss, the peak resident set size of "
                 "the process since it started (not per fit: later fits can only show "
                 "equal or higher values).",
}



def machine_info(device: str) -> dict[str, Any]:
    """Describe where the benchmark ran.

    Parameters
    ----------
    device : str
        The torch device the nets trained on.

    Returns
    -------
    dict
        Platform, Python, CPU model and counts, torch version and threads, the device's
        name and the git commit of the working tree (``None`` outside a repository).

    """
    cpu_model = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(torch.device(device))
    else:
        device_name = f"CPU ({cpu_model})"
    git = git_state(Path(__file__).resolve().parent)
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "device_name": device_name,
        **git,
    }


