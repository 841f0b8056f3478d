"""Hyperparameter search for LCC classifiers: Optuna studies scored by scikit-learn CV.

``LCCSearchCV`` is the estimator; ``python -m sklcc.tuning worker`` adds workers to a stored
study; ``plot_optimization_history`` draws a finished study.
"""

from sklcc.tuning.plot import plot_optimization_history
from sklcc.tuning.search import LCCSearchCV
from sklcc.tuning.space import default_search_space

__all__ = ["LCCSearchCV", "default_search_space", "plot_optimization_history"]
