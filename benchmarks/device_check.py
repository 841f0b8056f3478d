"""Check LCCClassifier on an accelerator: fit, predict, refresh and persistence on ``--device``.

Fits the same seeded LCC recipe on scikit-learn's digits on the CPU and on the device,
and prints test accuracy, fit time, the refresh split and whether pickling the
device-trained net round-trips. Exits non-zero if anything fails.

    python benchmarks/device_check.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sklcc import LCCClassifier
from sklcc.diagnostics import REFRESH_KEYS, history_key


class MLP(torch.nn.Module):
    """64 -> 256 -> 10, LCC on ``hidden``."""

    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU())
        self.out = torch.nn.Linear(256, 10)

    def forward(self, x):
        """Class probabilities."""
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


def fit_on(device: str, X_train, y_train, X_test, y_test) -> dict:
    """Fit the seeded recipe on ``device`` and summarise it."""
    net = LCCClassifier(MLP, lcc_layers=["hidden"], max_epochs=10, lr=0.1,
                        lcc_warmup=1, random_state=0, device=device, verbose=0)
    start = time.perf_counter()
    net.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    restored = pickle.loads(pickle.dumps(net))
    refresh = [row for row in net.history if history_key("refresh_s") in row]
    return {
        "device": device,
        "param_device": str(next(net.module_.parameters()).device),
        "test_accuracy": float(net.score(X_test, y_test)),
        "fit_s": fit_s,
        "pickle_round_trip": bool(np.array_equal(restored.predict(X_test), net.predict(X_test))),
        "refreshes": len(refresh),
        "last_refresh": {key: refresh[-1].get(key) for key in map(history_key, REFRESH_KEYS)},
        "train_lcc": net.history[:, "train_lcc"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    report = {"torch": torch.__version__,
              "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    report["runs"] = [fit_on(d, X_train, y_train, X_test, y_test) for d in ("cpu", args.device)]
    print(json.dumps(report, indent=2))
    ok = all(r["pickle_round_trip"] and r["refreshes"] == 9 for r in report["runs"])
    ok &= report["runs"][1]["param_device"].startswith(args.device)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
