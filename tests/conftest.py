"""Shared test rules: testbed tests never skip silently."""

import os
import shutil
import subprocess

import pytest


def _testbed_missing() -> str:
    if os.geteuid() != 0:
        return "it needs root (network namespaces, nspawn, loop devices)"
    if not shutil.which("systemd-nspawn"):
        return "systemd-nspawn is missing (apt-get install systemd-container; ./dev test installs it as root)"
    return ""


def pytest_collection_modifyitems(config, items):
    """A selected testbed test that cannot run fails with the reason; deselect it with -m 'not testbed'."""
    missing = _testbed_missing()
    if not missing:
        return
    for item in items:
        if item.get_closest_marker("testbed"):
            item.add_marker(pytest.mark.usefixtures("_testbed_unavailable"))
    config._testbed_missing = missing


@pytest.fixture
def _testbed_unavailable(request):
    pytest.fail(f"testbed test cannot run: {request.config._testbed_missing}; deselect it with -m 'not testbed'")


@pytest.fixture
def private_key_file(tmp_path):
    """A throwaway ed25519 private key made at run time (tests that feed a private key where a public one
    belongs)."""
    path = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)], check=True)
    return path


def _serving(fake):
    """A fake API server started for one test and stopped after it, also when the test fails."""
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_cloud():
    """A fresh fake Hetzner Cloud API on 127.0.0.1 (tests/fakecloud); HCLOUD_ENDPOINT = its URL."""
    from tests.fakecloud import FakeCloud

    yield from _serving(FakeCloud())


@pytest.fixture
def fake_stripe():
    """A fresh fake Stripe API on 127.0.0.1 (tests/fakestripe); STRIPE_API_BASE = fake_stripe.url."""
    from tests.fakestripe import FakeStripe

    yield from _serving(FakeStripe())
