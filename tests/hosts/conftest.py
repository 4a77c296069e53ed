"""Point testinfra at the inventory's hosts unless the user gave --ssh-config or --hosts."""

import os
import tempfile

import pytest

from tests.hosts import live


def pytest_configure(config):
    if config.option.ssh_config:
        return
    handle, path = tempfile.mkstemp(prefix="mindroom-ssh-config-")
    with os.fdopen(handle, "w") as config_file:
        config_file.write(live.ssh_config())
    config.option.ssh_config = path
    config.add_cleanup(lambda: os.unlink(path))


@pytest.fixture
def host_data(host):
    return live.data(host)
