import pytest

from devtools.harness import find_comfyui

HOST_ROOT = find_comfyui()
SKIP_LINE = ("tests/host skipped: no ComfyUI host. Set COMFYUI_PATH to a ComfyUI folder (or install this pack in "
             "ComfyUI/custom_nodes) and run pytest with ComfyUI's Python.")


def pytest_ignore_collect(collection_path, config):
    # Without a host the host tests are not collected at all; one summary line says why.
    return HOST_ROOT is None and collection_path.name.startswith("test_")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if HOST_ROOT is None:
        terminalreporter.write_line(SKIP_LINE)


@pytest.fixture(scope="session")
def host():
    from devtools.harness import get_host

    return get_host()


@pytest.fixture(scope="session")
def tiny(host):
    from devtools.tiny_models import TinyModels

    return TinyModels(host)
