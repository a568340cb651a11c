import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import find_comfyui  # noqa: E402

SKIP_REASON = ("no ComfyUI host: set COMFYUI_PATH to a ComfyUI checkout (or install this pack in "
               "ComfyUI/custom_nodes) and run pytest with ComfyUI's Python to run the host tests")


def pytest_collection_modifyitems(config, items):
    if find_comfyui() is not None:
        return
    marker = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if "tests/host" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def host():
    from harness import get_host

    return get_host()


@pytest.fixture(scope="session")
def tiny(host):
    from tiny_models import TinyModels

    return TinyModels(host)
