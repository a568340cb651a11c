import os

import pytest

from devtools.harness import find_comfyui

HOST_ROOT = find_comfyui()
SKIP_LINE = ("tests/host skipped: no ComfyUI host. Set COMFYUI_PATH to a ComfyUI folder (or install this pack in "
             "ComfyUI/custom_nodes) and run pytest with ComfyUI's Python.")


REALSIZE = os.environ.get("VA_REALSIZE") == "1"
REALSIZE_FILE = "test_realsize_host.py"
REALSIZE_LINE = (f"tests/host/{REALSIZE_FILE} skipped: the real-size tests are opt-in. Set VA_REALSIZE=1 to run them "
                 "(about 20 GB of memory; the random-weight models are built once into ~/.cache/video-adapters/realsize).")


def pytest_ignore_collect(collection_path, config):
    # Without a host the host tests are not collected at all; one summary line says why. The real-size tests are
    # collected only when asked for.
    if HOST_ROOT is None and collection_path.name.startswith("test_"):
        return True
    if collection_path.name == REALSIZE_FILE and not REALSIZE:
        return True
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if HOST_ROOT is None:
        terminalreporter.write_line(SKIP_LINE)
    elif not REALSIZE:
        terminalreporter.write_line(REALSIZE_LINE)


@pytest.fixture(scope="session")
def host():
    from devtools.harness import get_host

    return get_host()


@pytest.fixture(scope="session")
def tiny(host):
    from devtools.tiny_models import TinyModels

    return TinyModels(host)
