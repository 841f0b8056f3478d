"""skorch's own NeuralNetClassifier tests, run on LCCClassifier.

The test class is imported from the installed skorch (``skorch/tests/test_classifier.py``,
``TestNeuralNet``) with only its ``net_cls`` fixture swapped. The tests whose expected
message names the class are re-stated with ``LCCClassifier`` in the message: the only
differences allowed.
"""

import numpy as np
import pytest
import torch

from sklcc import LCCClassifier

skorch_tests = pytest.importorskip("skorch.tests.test_classifier")
# The fixtures skorch's test class reads from skorch's conftest.
from skorch.tests.conftest import classifier_data, classifier_module  # noqa: E402, F401

# skorch's test class defines module-scoped fixtures as methods, which pytest deprecates.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Module-scoped fixtures defined as instance methods")


class TestLCCClassifierAsNeuralNetClassifier(skorch_tests.TestNeuralNet):
    """skorch's ``TestNeuralNet`` with ``LCCClassifier`` as the net class."""

    @pytest.fixture(scope="module")
    def net_cls(self):
        return LCCClassifier

    @pytest.mark.parametrize("classes", [[], np.array([])])
    def test_pass_empty_classes_raises(self, net_cls, module_cls, data, classes):
        net = net_cls(module_cls, max_epochs=0, classes=classes).fit(*data).fit(*data)
        with pytest.raises(AttributeError) as exc:
            net.classes_  # noqa: B018

        assert exc.value.args[0] == "LCCClassifier has no attribute 'classes_'"

    def test_error_when_classes_could_not_be_inferred(self, net_cls, module_cls, data):
        class MyDataset(torch.utils.data.Dataset):
            """Dataset class that makes it impossible to access y."""

            def __len__(self):
                return len(data[0])

            def __getitem__(self, i):
                return data[0][i], data[1][i]

        net = net_cls(module_cls, max_epochs=0, train_split=False)
        net.fit(MyDataset(), y=None)

        msg = (
            "LCCClassifier could not infer the classes from y; "
            "this error probably occurred because the net was trained without y "
            "and some function tried to access the '.classes_' attribute; "
            "a possible solution is to provide the 'classes' argument when "
            "initializing LCCClassifier"
        )
        with pytest.raises(AttributeError, match=msg):
            net.classes_  # noqa: B018


def test_only_the_messages_differ():
    # Every test of skorch's class runs here; the two re-stated ones differ from skorch's
    # in the class name of the expected message and nothing else.
    import inspect

    ours, theirs = TestLCCClassifierAsNeuralNetClassifier, skorch_tests.TestNeuralNet
    restated = {name for name in vars(ours) if name.startswith("test_")}
    assert restated == {"test_pass_empty_classes_raises",
                        "test_error_when_classes_could_not_be_inferred"}
    for name in restated:
        words = inspect.getsource(getattr(theirs, name)).count("NeuralNetClassifier")
        assert words == inspect.getsource(getattr(ours, name)).count("LCCClassifier")
