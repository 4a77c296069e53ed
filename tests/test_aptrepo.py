"""tests/testbed/aptrepo.py builds a signed apt repository holding the Dokku stand-in."""

import subprocess

from tests.testbed import aptrepo


def test_repo_is_signed_and_lists_the_standin(tmp_path):
    repo = tmp_path / "repo"
    aptrepo.build(repo, "0.36.4", "trixie")
    aptrepo.build(repo, "0.36.4", "trixie")  # idempotent: same key, fresh indexes
    dist = repo / "dists/trixie"
    packages = (dist / "main/binary-amd64/Packages").read_text()
    assert "Package: dokku\n" in packages and "Version: 0.36.4\n" in packages
    assert "STAND-IN" in packages
    keyring = tmp_path / "key.gpg"
    subprocess.run(["gpg", "--batch", "--dearmor", "-o", str(keyring), str(repo / "gpgkey")], check=True)
    subprocess.run(["gpgv", "--keyring", str(keyring), str(dist / "InRelease")], check=True, capture_output=True)
    release = (dist / "Release").read_text()
    assert "main/binary-amd64/Packages" in release and " Release\n" not in release
    deb = repo / "pool/main/d/dokku/dokku_0.36.4_all.deb"
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
    assert "root/root" in listing and "./usr/bin/dokku" in listing
    assert not any(path.name.endswith("gnupg") for path in repo.iterdir()), "the signing key must not be served"
    agents = subprocess.run(["pgrep", "-f", f"gpg-agent --homedir {tmp_path}"], capture_output=True, text=True)
    assert agents.stdout == "", "the build must not leave its gpg-agent running"
