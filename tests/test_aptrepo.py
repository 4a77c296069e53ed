"""tests/testbed/aptrepo.py builds a signed apt repository holding the Dokku stand-in and Dokku's own dependencies."""

import subprocess

from tests.testbed import aptrepo


def test_repo_is_signed_and_lists_the_standin(tmp_path):
    repo = tmp_path / "repo"
    aptrepo.build(repo, "0.38.27", "trixie")
    aptrepo.build(repo, ["0.38.26", "0.38.27"], "trixie")  # idempotent: same key, fresh indexes; several versions
    dist = repo / "dists/trixie"
    packages = (dist / "main/binary-amd64/Packages").read_text()
    assert "Package: dokku\n" in packages and "STAND-IN" in packages
    assert packages.count("Package: dokku\n") == 2
    assert "Version: 0.38.26\n" in packages and "Version: 0.38.27\n" in packages
    for name, (version, _) in aptrepo.DEPENDENCIES.items():
        assert f"Package: {name}\nArchitecture: all\nVersion: {version}\n" in packages
    keyring = tmp_path / "key.gpg"
    subprocess.run(["gpg", "--batch", "--dearmor", "-o", str(keyring), str(repo / "gpgkey")], check=True)
    subprocess.run(["gpgv", "--keyring", str(keyring), str(dist / "InRelease")], check=True, capture_output=True)
    release = (dist / "Release").read_text()
    assert "main/binary-amd64/Packages" in release and " Release\n" not in release
    deb = repo / "pool/main/d/dokku/dokku_0.38.27_amd64.deb"
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
    assert "root/root" in listing and "./usr/bin/dokku" in listing
    assert "./var/lib/dokku/core-plugins/available/nginx-vhosts/templates/dokku.conf.sigil" in listing
    scripts = subprocess.run(["dpkg-deb", "-I", str(deb)], check=True, capture_output=True, text=True).stdout
    assert all(name in scripts for name in ("postinst", "prerm", "config", "templates"))
    sshcommand = repo / "pool/main/s/sshcommand/sshcommand_0.20.2_all.deb"
    listing = subprocess.run(["dpkg-deb", "-c", str(sshcommand)], check=True, capture_output=True, text=True).stdout
    assert "./usr/bin/sshcommand" in listing
    assert not any(path.name.endswith("gnupg") for path in repo.iterdir()), "the signing key must not be served"
    agents = subprocess.run(["pgrep", "-f", f"gpg-agent --homedir {tmp_path}"], capture_output=True, text=True)
    assert agents.stdout == "", "the build must not leave its gpg-agent running"
