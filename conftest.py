"""pytest configuration shared by the tests, the package doctests and the benchmark's.

The image-tooling doctests load pretrained backbones; they belong to the slow lane
(``pytest -m "not slow"`` skips them, CI runs everything).
"""

import pytest


def pytest_collection_modifyitems(config, items):
    """Mark the doctests of ``sklcc/images`` slow."""
    for item in items:
        if type(item).__name__ == "DoctestItem" and "sklcc/images/" in str(item.path):
            item.add_marker(pytest.mark.slow)
