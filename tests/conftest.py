import os
import sys

# Host-free tests import the core packages (`adapters`, `samplers`) from the repository root and the
# test helpers (such as gaussian_reference) from this folder.
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    """The tests run tiny models, for which one thread is much faster than threads contending for cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
