"""scikit-learn's own conformance checks, pinned: LCCClassifier passes more than skorch."""

import warnings

import pytest
import torch
from sklearn.utils.estimator_checks import check_estimator
from skorch import NeuralNetClassifier

from sklcc import LCCClassifier

# scikit-learn's whole check suite trains dozens of nets: the slow lane
pytestmark = pytest.mark.slow


class LazyMLP(torch.nn.Module):
    """Adapts to any number of features; LCCClassifier passes the number of classes."""

    def __init__(self, n_classes=3):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.LazyLinear(16), torch.nn.ReLU())
        self.out = torch.nn.LazyLinear(n_classes)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x.float())), dim=-1)


# LCCClassifier passes 49 of scikit-learn's 52 distinct checks (plain skorch: 30 with the same
# module). The three it does not pass are skorch's, and plain NeuralNetClassifier fails
# them the same way:
# - check_no_attributes_set_in_init: skorch's NeuralNet.__init__ sets history_,
#   initialized_ and virtual_params_ (its prefix routing needs them before fit);
# - check_set_params: skorch's get_params lists its bookkeeping set _params_to_validate
#   as a parameter; the check sets it to a float, and skorch's next set_params calls
#   .add on it;
# - check_array_api_input: skipped by scikit-learn unless SCIPY_ARRAY_API is set.
SKORCH_FAILURES = {"check_no_attributes_set_in_init", "check_set_params"}


def run_checks(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, on_fail=None, on_skip=None)
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    return passed - failed, failed, len({r["check_name"] for r in results}), len(results)


@pytest.fixture(scope="module")
def lcc_results():
    return run_checks(LCCClassifier(
        LazyMLP, max_epochs=10, lr=0.5, verbose=0, train_split=None, n_neighbors=2,
        lcc_warmup=0, random_state=0,
    ))


def test_lcc_fails_only_skorchs_own_checks(lcc_results):
    passed, failed, n_checks, _ = lcc_results
    print(f"LCCClassifier passes {len(passed)} of {n_checks} checks; fails {sorted(failed)}")
    assert failed == SKORCH_FAILURES  # every other check passes (or is skipped)
    assert len(passed) >= 48  # 49 with scikit-learn 1.9, 48 with 1.6 (fewer checks)


def test_lcc_passes_more_checks_than_plain_skorch(lcc_results):
    torch.manual_seed(0)
    plain, n_plain_failed, _, n_plain = run_checks(
        NeuralNetClassifier(LazyMLP, max_epochs=10, lr=0.5, verbose=0, train_split=None)
    )
    passed, _, _, n_lcc = lcc_results
    assert n_plain == n_lcc  # the same list of checks
    print(f"plain NeuralNetClassifier passes {len(plain)}; LCCClassifier {len(passed)}")
    assert len(passed) >= len(plain) + 15  # 30 for plain skorch 1.4 with scikit-learn 1.9
    assert SKORCH_FAILURES <= n_plain_failed
