"""A signed apt repository holding the Dokku stand-in (tests/testbed/dokku_standin/), laid out like
packagecloud's: dists/<suite>/{InRelease,Release,Release.gpg,main/binary-amd64/Packages}, pool/, and the
ASCII-armored signing key at <repo>/gpgkey. The deploy adds it exactly as it adds Dokku's real repository.

The signing key is a throwaway ed25519 key kept beside the repository in .<repo>-gnupg (not served; made once,
reused by later builds).
Needs dpkg-deb, apt-ftparchive (apt-utils) and gpg on the machine that builds it.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

STANDIN = Path(__file__).resolve().parent / "dokku_standin"
KEY_UID = "mindroom testbed apt repository <apt@mindroom.test>"
ARCHITECTURE = "amd64"


def _run(args: list[str], env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, check=True, capture_output=True, text=True, env=env, **kwargs)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"aptrepo: {' '.join(args[:3])} failed: {error.stderr.strip()}") from None


def _build_deb(repo_dir: Path, version: str) -> Path:
    stage = repo_dir / "build" / f"dokku_{version}"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "DEBIAN").mkdir(parents=True)
    (stage / "usr/bin").mkdir(parents=True)
    (stage / "DEBIAN/control").write_text((STANDIN / "control").read_text().replace("@VERSION@", version))
    shutil.copyfile(STANDIN / "postinst", stage / "DEBIAN/postinst")
    (stage / "usr/bin/dokku").write_text((STANDIN / "dokku").read_text().replace("@VERSION@", version))
    for path in (stage / "DEBIAN/postinst", stage / "usr/bin/dokku"):
        path.chmod(0o755)
    deb = repo_dir / "pool/main/d/dokku" / f"dokku_{version}_all.deb"
    deb.parent.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(stage), str(deb)])
    shutil.rmtree(repo_dir / "build")
    return deb


def _gpg_env(repo_dir: Path) -> dict:
    home = repo_dir.parent / f".{repo_dir.name}-gnupg"  # outside the served directory
    home.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    listed = subprocess.run(["gpg", "--batch", "--list-secret-keys", KEY_UID], capture_output=True, env=env)
    if listed.returncode != 0:
        _run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", KEY_UID, "ed25519", "sign", "never"], env=env)
    return env


def build(repo_dir: Path, dokku_version: str, suite: str) -> None:
    """Build (or rebuild) the repository with dokku_<dokku_version>_all.deb for `suite`. Idempotent."""
    repo_dir = Path(repo_dir)
    repo_dir.mkdir(parents=True, exist_ok=True)
    _build_deb(repo_dir, dokku_version)
    dist = repo_dir / "dists" / suite
    binary = dist / "main" / f"binary-{ARCHITECTURE}"
    binary.mkdir(parents=True, exist_ok=True)
    for old in ("Release", "InRelease", "Release.gpg"):
        (dist / old).unlink(missing_ok=True)
    packages = _run(["apt-ftparchive", "packages", "pool"], cwd=repo_dir).stdout
    (binary / "Packages").write_text(packages)
    with gzip.open(binary / "Packages.gz", "wt") as handle:
        handle.write(packages)
    release = _run([
        "apt-ftparchive",
        "-o", "APT::FTPArchive::Release::Origin=mindroom-testbed",
        "-o", "APT::FTPArchive::Release::Label=Dokku stand-in",
        "-o", f"APT::FTPArchive::Release::Suite={suite}",
        "-o", f"APT::FTPArchive::Release::Codename={suite}",
        "-o", f"APT::FTPArchive::Release::Architectures={ARCHITECTURE}",
        "-o", "APT::FTPArchive::Release::Components=main",
        "release", str(dist.relative_to(repo_dir)),
    ], cwd=repo_dir).stdout
    # Computed with the old Release files gone, else it would list a stale Release inside itself.
    (dist / "Release").write_text(release)
    env = _gpg_env(repo_dir)
    try:
        _run(["gpg", "--batch", "--yes", "--local-user", KEY_UID, "--clearsign", "-o", str(dist / "InRelease"),
              str(dist / "Release")], env=env)
        _run(["gpg", "--batch", "--yes", "--local-user", KEY_UID, "--armor", "--detach-sign", "-o",
              str(dist / "Release.gpg"), str(dist / "Release")], env=env)
        (repo_dir / "gpgkey").write_text(_run(["gpg", "--batch", "--armor", "--export", KEY_UID], env=env).stdout)
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)  # gpg leaves it running
