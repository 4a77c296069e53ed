"""A signed apt repository holding the Dokku stand-in (tests/testbed/dokku_standin/) and Dokku's own dependencies
that Debian lacks (DEPENDENCIES), laid out like
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
MAINTAINER = "mindroom-infra testbed <testbed@mindroom.test>"
# Dokku's own dependencies that Debian 13 lacks (sshcommand it has, but only a 2016 snapshot that Dokku's repo
# outranks), at the versions Dokku v0.38.27's contrib/dependencies.json names: (version, Depends). sshcommand is
# the real script (dokku/sshcommand v0.20.2, its Depends from its Makefile); the others are empty packages, as the
# stand-in does not need their binaries. Everything else dokku depends on comes from Debian.
DEPENDENCIES = {
    "sshcommand": ("0.20.2", "adduser, coreutils, jq, libc-bin, openssh-client"),
    "plugn": ("0.17.1", ""),
    "gliderlabs-sigil": ("0.12.1", ""),
    "docker-container-healthchecker": ("0.16.0", ""),
    "docker-image-labeler": ("0.10.0", ""),
    "lambda-builder": ("0.9.4", ""),
    "netrc": ("0.11.1", ""),
    "procfile-util": ("0.20.8", ""),
}
# Core plugins the package ships in /var/lib/dokku/core-plugins/available (the stand-in implements their
# subcommands; `resource` is the core plugin behind resource:limit, which the provisioner uses).
CORE_PLUGINS = ("00_dokku-standard", "apps", "common", "config", "cron", "domains", "nginx-vhosts", "plugin",
                "ps", "resource", "ssh-keys")


def _run(args: list[str], env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, check=True, capture_output=True, text=True, env=env, **kwargs)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"aptrepo: {' '.join(args[:3])} failed: {error.stderr.strip()}") from None


def _build_deb(repo_dir: Path, control: str, files: dict[str, tuple[str, int]]) -> Path:
    """A .deb from its control text and {path in the package: (content, mode)}; DEBIAN/* paths are its scripts."""
    fields = dict(line.split(": ", 1) for line in control.splitlines() if ": " in line and not line.startswith(" "))
    name, version, arch = fields["Package"], fields["Version"], fields["Architecture"]
    stage = repo_dir / "build" / f"{name}_{version}"
    shutil.rmtree(stage, ignore_errors=True)
    for path, (content, mode) in {"DEBIAN/control": (control, 0o644), **files}.items():
        target = stage / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)
    deb = repo_dir / "pool/main" / name[0] / name / f"{name}_{version}_{arch}.deb"
    deb.parent.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(stage), str(deb)])
    shutil.rmtree(repo_dir / "build")
    return deb


def _build_dokku(repo_dir: Path, version: str) -> Path:
    def standin(name: str) -> str:
        return (STANDIN / name).read_text().replace("@VERSION@", version)

    core = "var/lib/dokku/core-plugins/available"
    files = {
        "DEBIAN/templates": (standin("templates"), 0o644),
        "DEBIAN/config": (standin("config"), 0o755),
        "DEBIAN/postinst": (standin("postinst"), 0o755),
        "DEBIAN/prerm": (standin("prerm"), 0o755),
        "usr/bin/dokku": (standin("dokku"), 0o755),
        **{f"{core}/{plugin}/plugin.toml": (
            f'[plugin]\ndescription = "dokku core {plugin} plugin"\nversion = "{version}"\n[plugin.config]\n', 0o644)
           for plugin in CORE_PLUGINS},
        **{f"{core}/nginx-vhosts/templates/{path.name}": (path.read_text(), 0o644)
           for path in (STANDIN / "nginx-vhosts").iterdir()},
    }
    return _build_deb(repo_dir, standin("control"), files)


def _build_dependency(repo_dir: Path, name: str) -> Path:
    version, depends = DEPENDENCIES[name]
    control = (f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: {MAINTAINER}\n"
               + (f"Depends: {depends}\n" if depends else "")
               + f"Section: admin\nPriority: optional\nDescription: STAND-IN for Dokku's {name} {version} "
               "(mindroom-infra testbed only)\n")
    files = {}
    if name == "sshcommand":
        files = {"usr/bin/sshcommand": ((STANDIN / "sshcommand").read_text(), 0o755),
                 "usr/share/doc/sshcommand/copyright": ((STANDIN / "sshcommand.LICENSE").read_text(), 0o644)}
    return _build_deb(repo_dir, control, files)


def _gpg_env(repo_dir: Path) -> dict:
    home = repo_dir.parent / f".{repo_dir.name}-gnupg"  # outside the served directory
    home.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    listed = subprocess.run(["gpg", "--batch", "--list-secret-keys", KEY_UID], capture_output=True, env=env)
    if listed.returncode != 0:
        _run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", KEY_UID, "ed25519", "sign", "never"], env=env)
    return env


def build(repo_dir: Path, dokku_versions: str | list[str], suite: str) -> None:
    """Build (or rebuild) the repository for `suite` with the dokku stand-in at each of `dokku_versions` (one
    version or several, e.g. for an upgrade) and Dokku's own dependencies. Idempotent."""
    repo_dir = Path(repo_dir)
    repo_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(repo_dir / "pool", ignore_errors=True)  # exactly the packages asked for
    for version in [dokku_versions] if isinstance(dokku_versions, str) else dokku_versions:
        _build_dokku(repo_dir, version)
    for name in DEPENDENCIES:
        _build_dependency(repo_dir, name)
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
