import os
import sys

# The tests' one entry point to the repository: its root on sys.path, so tests import the core packages
# (`adapters`, `samplers`) and the shared support (`devtools`: headless host, tiny models, references, metrics).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    """The tests run tiny models, for which one thread is much faster than threads contending for cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
