"""The private scikit-learn helpers sklcc uses, imported in this one place.

scikit-learn keeps these out of its public API, so they may move between releases.
Importing them only here means a scikit-learn upgrade that moves one breaks a single
file with an obvious fix, instead of several modules at import time. Each one is what
scikit-learn's own estimators use, so sklcc's estimators validate and index exactly
as scikit-learn's do. Tested against scikit-learn 1.6 (the floor) and the newest.
"""

from __future__ import annotations

from sklearn.base import _fit_context as fit_context
from sklearn.utils import _safe_indexing as safe_indexing
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

__all__ = ["HasMethods", "Interval", "StrOptions", "fit_context", "safe_indexing"]
