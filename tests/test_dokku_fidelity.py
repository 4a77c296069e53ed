"""The Dokku stand-in (tests/testbed/dokku_standin/) against what Dokku does, one case per Dokku subcommand the
deploy uses (tasks/dokku.py), each stating the upstream behaviour and where it is written. On a DOKKU_VERSION bump,
re-read each source at the new tag and update the case and the stand-in together.

Sources: dokku/dokku v0.38.27, dokku/sshcommand v0.20.2, dokku/plugn v0.17.1, dokku/dokku-letsencrypt 0.25.1,
dokku/dokku-postgres 1.48.0, dokku/dokku-redis 1.43.0, joho/godotenv v1.5.1 (Dokku's env files). The stand-in runs
offline from its built package: extracted into a temporary root (DOKKU_STANDIN_ROOT puts its paths there), its
postinst's own functions set the plugin layout up, and the real sshcommand from the same repository handles the ssh-keys. Stubs stand only for what needs a system:
`crontab` (dokku's crontab in a file), `getent` and `sh -c "echo ~dokku"` (sshcommand's user lookup: no dokku user
here), `docker` (containers and images in a JSON file, every call logged: the apps' cases check what Dokku asks of
Docker).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from tests.testbed import aptrepo

VERSION = "0.38.27"
STANDIN = aptrepo.STANDIN
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdHkUoG9wUMMKKFD8tJB4Q0e6lqlUIUu6YmZuGSPVZp provisioner"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPq0Kd3CTwKJNBbn7lqZ3Rz0cRgO3tTBYaUeg5mvQKQ1 other"
STUBS = {
    "crontab": '#!/bin/sh\n'
               'f="$DOKKU_STANDIN_ROOT/crontab"\n'
               'if [ "$1" = -l ]; then [ -f "$f" ] || { echo "no crontab for dokku" >&2; exit 1; }; cat "$f"\n'
               'elif [ "$1" = - ]; then cat > "$f"; else exit 2; fi\n',
    "getent": "#!/bin/sh\nexit 0\n",
    "sh": '#!/bin/sh\necho "$DOKKU_STANDIN_ROOT/home/dokku"\n',
    "docker": (Path(__file__).resolve().parent / "fake_docker.py").read_text(),
}

# Dokku v0.38.27 debian/control, verbatim
CONTROL = {
    "Depends": "apache2-utils, locales, git, cpio, cron | cron-daemon, curl, logrotate, man-db, netcat, sshcommand, "
               "docker-engine-cs (>= 19.03.0) | docker-engine (>= 19.03.0) | docker-io (>= 19.03.0) | docker.io "
               "(>= 19.03.0) | docker-ce (>= 19.03.0) | docker-ee (>= 19.03.0) | moby-engine, docker-compose-plugin "
               "| moby-compose | docker-compose, docker-buildx-plugin | moby-buildx | docker-buildx, "
               "docker-container-healthchecker, docker-image-labeler, lambda-builder, net-tools, netrc, parallel, "
               "procfile-util, rsync, dos2unix, unzip, util-linux",
    "Recommends": "herokuish, bash-completion, dokku-update, dokku-event-listener",
    "Pre-Depends": "gliderlabs-sigil, jq, nginx (>= 1.8.0) | openresty, bind9-dnsutils, debconf, plugn, sudo, python3, "
                   "rsyslog",
}
# Dokku v0.38.27 contrib/dependencies.json: the versions of Dokku's own packages
DEPENDENCY_VERSIONS = {"sshcommand": "0.20.2", "plugn": "0.17.1", "gliderlabs-sigil": "0.12.1",
                       "docker-container-healthchecker": "0.16.0", "docker-image-labeler": "0.10.0",
                       "lambda-builder": "0.9.4", "netrc": "0.11.1", "procfile-util": "0.20.8"}
# Debian 13 (trixie) main: what apt finds there for each name in Depends/Pre-Depends (checked against the
# trixie Packages index the testbed's apt cache holds). Alternatives: the first that exists is what apt installs.
NOT_IN_DEBIAN = set(DEPENDENCY_VERSIONS) - {"sshcommand"}  # Debian's sshcommand is a 2016 snapshot (0~20160110)
DEBIAN_CHOICES = {"cron | cron-daemon": "cron", "netcat": "netcat-traditional (virtual netcat)",
                  "docker.io": "docker.io 26.1.5", "docker-compose": "docker-compose 2.26.1",
                  "docker-buildx": "docker-buildx 0.13.1", "nginx (>= 1.8.0) | openresty": "nginx 1.26.3"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The dokku and sshcommand packages extracted into a root, then the postinst's setup-plugins (which runs
    `dokku plugin:install --core`, the core install triggers) and setup-sshcommand."""
    base = tmp_path_factory.mktemp("standin")
    repo, root = base / "repo", base / "root"
    debs = [aptrepo._build_dokku(repo, VERSION), aptrepo._build_dependency(repo, "sshcommand")]
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    (root / "home/dokku/.ssh").mkdir(parents=True)
    (root / "home/dokku/.ssh/authorized_keys").touch()
    (root / "etc/nginx").mkdir(parents=True)
    (root / "etc/nginx/nginx.conf").write_text("http {\n\t# server_tokens off;\n\tinclude /etc/nginx/conf.d/*.conf;\n}\n")
    bin_dir = base / "stubs"
    bin_dir.mkdir()
    for name, text in STUBS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    postinst_functions(root, bin_dir, ["setup-plugins", "setup-sshcommand"], {"dokku/nginx_enable": "true"})
    return root


@pytest.fixture
def root(installed, tmp_path) -> Path:
    copy = tmp_path / "root"
    shutil.copytree(installed, copy, symlinks=True)
    # the layout's links point into the module's root: re-point them at the copy
    for link in [p for p in copy.rglob("*") if p.is_symlink()]:
        target = os.readlink(link).replace(str(installed), str(copy))
        link.unlink()
        link.symlink_to(target)
    shutil.copytree(installed.parent / "stubs", tmp_path / "stubs")
    return copy


def env(root: Path) -> dict:
    stubs = root.parent / "stubs"
    return {**os.environ, "DOKKU_STANDIN_ROOT": str(root), "PATH": f"{stubs}:{root}/usr/bin:{os.environ['PATH']}"}


def dokku(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["python3", str(root / "usr/bin/dokku"), *args], env=env(root), input=stdin, text=True,
                          capture_output=True)


def postinst_functions(root: Path, bin_dir: Path, functions: list[str], answers: dict[str, str],
                       environment: dict | None = None) -> subprocess.CompletedProcess:
    """Run functions of the stand-in's postinst as written, with db_get answering from `answers` (debconf),
    chown a no-op (no dokku user here), `dokku` the stand-in and `sshcommand` logging its arguments and stdin."""
    cases = "".join(f'    {key}) RET={value!r} ;;\n' for key, value in answers.items())
    script = (
        "set -eo pipefail\n"
        f"DOKKU_ROOT={root}/home/dokku DOKKU_LIB_ROOT={root}/var/lib/dokku\n"
        f'db_get() {{\n  case "$1" in\n{cases}    *) return 10 ;;\n  esac\n}}\n'
        "chown() { :; }\n"
        f'dokku() {{ python3 {root}/usr/bin/dokku "$@"; }}\n'
        f'sshcommand() {{ echo "sshcommand $* $(cat)" >> {root}/sshcommand.log; }}\n'
        + "".join(f"source <(sed -n '/^{name}() {{/,/^}}/p' {STANDIN / 'postinst'})\n{name}\n" for name in functions)
    )
    environment = {**os.environ, "DOKKU_STANDIN_ROOT": str(root), "PATH": f"{bin_dir}:{os.environ['PATH']}",
                   **(environment or {})}
    result = subprocess.run(["bash", "-c", script], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


# -- the checks ----------------------------------------------------------------------------------------------
def check_version(root):
    assert dokku(root, "version").stdout == f"dokku version {VERSION}\n"


def check_domains_set_global(root):
    assert dokku(root, "domains:set-global", "a.example", "b.example").returncode == 0
    assert (root / "home/dokku/VHOST").read_text() == "a.example\nb.example\n"
    refused = dokku(root, "domains:set-global", "bad_domain!")
    assert refused.returncode == 1 and "bad_domain! is invalid. exiting..." in refused.stderr


def check_nginx_set(root):
    assert dokku(root, "nginx:set", "--global", "client-max-body-size", "50m").returncode == 0
    stored = root / "var/lib/dokku/config/nginx/--global/client-max-body-size"
    assert stored.read_text() == "50m" and stored.stat().st_mode & 0o777 == 0o600
    refused = dokku(root, "nginx:set", "--global", "server-tokens", "off")
    assert refused.returncode == 1 and " !     Invalid key specified, valid keys include: " in refused.stderr
    assert not (root / "var/lib/dokku/config/nginx/--global/server-tokens").exists()
    assert dokku(root, "nginx:set", "--global", "client-max-body-size").returncode == 0  # no value: unset
    assert not stored.exists()


def check_nginx_install(root):
    dokku_conf = (root / "etc/nginx/conf.d/dokku.conf").read_text()
    assert "include /home/dokku/*/nginx.conf;" in dokku_conf and "\nserver_tokens off;\n" in dokku_conf
    assert "ssl_dhparam /etc/nginx/dhparam.pem;" in dokku_conf and (root / "etc/nginx/dhparam.pem").is_file()
    assert "server_tokens" not in (root / "etc/nginx/nginx.conf").read_text()
    assert (root / "etc/nginx/conf.d/server_names_hash_bucket_size.conf").read_text() == \
        "server_names_hash_bucket_size 512;\n"
    sudoers = root / "etc/sudoers.d/dokku-nginx"
    assert sudoers.read_text().startswith("%dokku ALL=(ALL) NOPASSWD:/usr/bin/systemctl enable nginx, ")
    assert sudoers.stat().st_mode & 0o777 == 0o440


def check_plugin_install(root):
    url = "https://github.com/dokku/dokku-postgres.git"
    assert dokku(root, "plugin:install", url, "--committish", "1.48.0", "--name", "postgres").returncode == 0
    plugins = root / "var/lib/dokku/plugins"
    assert (plugins / "enabled/postgres").is_symlink()
    assert os.readlink(plugins / "enabled/postgres") == str(plugins / "available/postgres")
    assert (plugins / "available/postgres/.plugin_committish").read_text() == "1.48.0\n"
    listed = dokku(root, "plugin:list").stdout
    assert "  postgres             1.48.0 enabled    " in listed and "  resource " in listed
    again = dokku(root, "plugin:install", url, "--committish", "1.48.0", "--name", "postgres")
    assert again.returncode == 1 and " !     Plugin already enabled" in again.stderr
    other = dokku(root, "plugin:install", "https://example.invalid/fork.git", "--name", "postgres")
    assert other.returncode == 1 and "already installed, but with a different url" in other.stderr
    assert dokku(root, "plugin:installed", "postgres").returncode == 0
    assert dokku(root, "plugin:installed", "redis").returncode == 1


def check_plugin_update(root):
    url = "https://github.com/dokku/dokku-letsencrypt.git"
    assert dokku(root, "plugin:install", url, "--committish", "0.25.0", "--name", "letsencrypt").returncode == 0
    assert dokku(root, "plugin:update", "letsencrypt", "0.25.1").returncode == 0
    available = root / "var/lib/dokku/plugins/available/letsencrypt"
    assert (available / ".plugin_committish").read_text() == "0.25.1\n"
    assert 'version = "0.25.1"' in (available / "plugin.toml").read_text()
    missing = dokku(root, "plugin:update", "redis", "1.43.0")
    assert missing.returncode == 1 and "Specified plugin not enabled or installed" in missing.stderr
    core = dokku(root, "plugin:update", "nginx-vhosts", "x")
    assert core.returncode == 1 and "Cannot trigger plugin:update against core plugin" in core.stderr


def check_plugin_enable(root):
    url = "https://github.com/dokku/dokku-redis.git"
    assert dokku(root, "plugin:install", url, "--committish", "1.43.0", "--name", "redis").returncode == 0
    (root / "var/lib/dokku/plugins/enabled/redis").unlink()  # plugn disable
    assert dokku(root, "plugin:enable", "redis").returncode == 0
    again = dokku(root, "plugin:enable", "redis")
    assert again.returncode == 1 and "Plugin already enabled" in again.stderr


def check_plugin_install_dependencies(root):
    assert dokku(root, "plugin:install-dependencies", "--core").returncode == 0


def check_letsencrypt_set(root):
    absent = dokku(root, "letsencrypt:set", "--global", "email", "ops@example.com")
    assert absent.returncode == 1 and "is not a dokku command." in absent.stderr  # only once the plugin is installed
    dokku(root, "plugin:install", "https://github.com/dokku/dokku-letsencrypt.git", "--committish", "0.25.1",
          "--name", "letsencrypt")
    assert dokku(root, "letsencrypt:set", "--global", "email", "ops@example.com").returncode == 0
    assert (root / "var/lib/dokku/config/letsencrypt/--global/email").read_text() == "ops@example.com"
    refused = dokku(root, "letsencrypt:set", "--global", "e-mail", "x")
    assert refused.returncode == 1 and "Invalid key specified" in refused.stderr


def check_letsencrypt_cron_job(root):
    dokku(root, "plugin:install", "https://github.com/dokku/dokku-letsencrypt.git", "--committish", "0.25.1",
          "--name", "letsencrypt")
    assert (root / "var/lib/dokku/data/letsencrypt/--global/accounts").is_dir()  # its install trigger ran
    assert dokku(root, "letsencrypt:cron-job", "--add").returncode == 0
    assert dokku(root, "letsencrypt:cron-job", "--add").returncode == 0  # once, however often
    assert (root / "crontab").read_text() == "\n@daily /var/lib/dokku/plugins/available/letsencrypt/cron-job\n"
    assert (root / "var/lib/dokku/data/letsencrypt/--global/autorenew").is_file()


def check_ssh_keys_add(root):
    added = dokku(root, "ssh-keys:add", "provisioner", stdin=KEY + "\n")
    assert added.returncode == 0, added.stderr
    line = (root / "home/dokku/.ssh/authorized_keys").read_text()
    fingerprint = subprocess.run(["ssh-keygen", "-lf", "-"], input=KEY, capture_output=True, text=True).stdout.split()[1]
    assert line == (f'command="FINGERPRINT={fingerprint} NAME=\\"provisioner\\" `cat {root}/home/dokku/.sshcommand` '
                    f'$SSH_ORIGINAL_COMMAND",no-agent-forwarding,no-user-rc,no-X11-forwarding,no-port-forwarding {KEY}\n')
    same_name = dokku(root, "ssh-keys:add", "provisioner", stdin=OTHER_KEY + "\n")
    assert same_name.returncode == 1 and "Duplicate ssh key name" in same_name.stderr
    same_key = dokku(root, "ssh-keys:add", "another-name", stdin=KEY + "\n")
    assert same_key.returncode == 1 and "Duplicate ssh public key specified" in same_key.stderr


def check_ssh_keys_list(root):
    dokku(root, "ssh-keys:add", "provisioner", stdin=KEY + "\n")
    fingerprint = subprocess.run(["ssh-keygen", "-lf", "-"], input=KEY, capture_output=True, text=True).stdout.split()[1]
    assert dokku(root, "ssh-keys:list").stdout == (
        f'{fingerprint} NAME="provisioner" SSHCOMMAND_ALLOWED_KEYS="no-agent-forwarding,no-user-rc,'
        'no-X11-forwarding,no-port-forwarding"\n')
    listed = json.loads(dokku(root, "ssh-keys:list", "--format", "json").stdout)
    assert [(key["name"], key["fingerprint"]) for key in listed] == [("provisioner", fingerprint)]


def check_ssh_keys_remove(root):
    dokku(root, "ssh-keys:add", "provisioner", stdin=KEY + "\n")
    assert dokku(root, "ssh-keys:remove", "provisioner").returncode == 0
    assert (root / "home/dokku/.ssh/authorized_keys").read_text() == ""
    assert dokku(root, "ssh-keys:add", "provisioner", stdin=KEY + "\n").returncode == 0  # the name is free again


# -- dokku-postgres 1.48.0 / dokku-redis 1.43.0 (identical common-functions and subcommands/*; each plugin's own
# functions and config). Without a tty (stdin here is a pipe) Dokku sets DOKKU_QUIET_OUTPUT, so the *_quiet lines
# are not printed. What needs the servers themselves (connect, export, import's data) is proven on the lab.
POSTGRES_URL, REDIS_URL = "https://github.com/dokku/dokku-postgres.git", "https://github.com/dokku/dokku-redis.git"


def with_service_plugin(root, prefix):
    url = POSTGRES_URL if prefix == "postgres" else REDIS_URL
    tag = "1.48.0" if prefix == "postgres" else "1.43.0"
    assert dokku(root, "plugin:install", url, "--committish", tag, "--name", prefix).returncode == 0
    return root / "var/lib/dokku/services" / prefix


def service(root, *args, stdin=""):
    return dokku(root, *args, stdin=stdin)


def check_service_create(root):
    absent = service(root, "postgres:create", "db")
    assert absent.returncode == 1 and "is not a dokku command." in absent.stderr  # only with the plugin installed
    services = with_service_plugin(root, "postgres")
    for bad in ("bad.name", "a/b", ""):
        refused = service(root, "postgres:create", *([bad] if bad else []))
        assert refused.returncode == 1 and refused.stderr == (
            " !     Please specify a valid name for the service. Valid characters are: [A-Za-z0-9_]+\n")
    created = service(root, "postgres:create", "my-db")
    assert created.returncode == 0, created.stderr
    assert "=====> Postgres container created: my-db\n" in created.stdout
    service_root = services / "my-db"
    password = (service_root / "PASSWORD").read_text()
    assert re.fullmatch(r"[0-9a-f]{32}\n", password) and (service_root / "PASSWORD").stat().st_mode & 0o777 == 0o640
    assert {path.name: path.read_text() for path in service_root.iterdir() if path.is_file()} == {
        "PASSWORD": password, "LINKS": "", "ENV": "\n", "CONFIG_OPTIONS": "\n", "IMAGE": "postgres\n",
        "IMAGE_VERSION": "18.4\n", "DATABASE_NAME": "my_db\n", "ID": "dokku-postgres@my-db.service\n"}
    assert (service_root / "data").is_dir()
    again = service(root, "postgres:create", "my-db")
    assert again.returncode == 1 and again.stderr == " !     Postgres service my-db already exists\n"


def check_service_list(root):
    with_service_plugin(root, "postgres")
    empty = service(root, "postgres:list")
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", " !     There are no Postgres services\n")
    for name in ("zeta", "alpha"):
        service(root, "postgres:create", name)
    listed = service(root, "postgres:list")
    assert (listed.returncode, listed.stdout) == (0, "alpha\nzeta\n")  # no `=====> Postgres services` without a tty
    assert service(root, "--quiet", "postgres:list").stdout == "alpha\nzeta\n"


def check_service_exists(root):
    with_service_plugin(root, "postgres")
    service(root, "postgres:create", "db")
    assert service(root, "postgres:exists", "db").stdout == "-----> Service db exists\n"
    for name in ("nope", "../postgres"):
        missing = service(root, "postgres:exists", name)
        assert missing.returncode == 1 and missing.stderr == f" !     Postgres service {name} does not exist\n"
    unnamed = service(root, "postgres:exists")
    assert unnamed.returncode == 1 and "Please specify a valid name for the service" in unnamed.stderr


def check_service_info(root):
    services = with_service_plugin(root, "postgres")
    service(root, "postgres:create", "my_db")
    password = (services / "my_db/PASSWORD").read_text().strip()
    assert service(root, "postgres:info", "my_db", "--dsn").stdout == \
        f"postgres://postgres:{password}@dokku-postgres-my-db:5432/my_db\n"
    assert service(root, "postgres:info", "my_db", "--data-dir").stdout == f"{services}/my_db/data\n"
    assert service(root, "postgres:info", "my_db", "--version").stdout == "postgres:18.4\n"
    lines = service(root, "postgres:info", "my_db").stdout.splitlines()
    assert lines[0] == f"       Config dir:          {services}/my_db/data" and lines[2].startswith("       Data dir: ")
    invalid = service(root, "postgres:info", "my_db", "--nope")
    assert invalid.returncode == 1 and " !     Invalid flag passed, valid flags: --config-dir --config-options " \
        "--data-dir --dsn --exposed-ports --id --internal-ip --initial-network --links --post-create-network " \
        "--post-start-network --service-root --status --version\n" == invalid.stderr


def check_service_destroy(root):
    services = with_service_plugin(root, "postgres")
    service(root, "postgres:create", "db")
    wrong = service(root, "postgres:destroy", "db", stdin="other\n")
    assert wrong.returncode == 1 and wrong.stderr.endswith(" !     Confirmation did not match db. Aborted.\n")
    assert ' !     To proceed, type "db"\n' in wrong.stderr
    no_answer = service(root, "postgres:destroy", "db")  # `read` at end of input fails: set -e, no message
    assert no_answer.returncode == 1 and "Confirmation" not in no_answer.stderr and (services / "db").is_dir()
    (services / "db/LINKS").write_text("some-app\n")
    linked = service(root, "postgres:destroy", "db", "--force")
    assert linked.returncode == 1 and linked.stderr == " !     Cannot delete linked service\n"
    (services / "db/LINKS").write_text("")
    (root / "var/lib/dokku/config/postgres/db").mkdir(parents=True)
    confirmed = service(root, "postgres:destroy", "db", stdin="db\n")
    assert confirmed.returncode == 0 and confirmed.stdout.endswith("=====> Postgres container deleted: db\n")
    assert not (services / "db").exists() and not (root / "var/lib/dokku/config/postgres/db").exists()
    for force in (["db", "force"], ["db", "-f"], ["db", "--force"], ["--force", "db"]):
        service(root, "postgres:create", "db")
        args = ["--force", "postgres:destroy", "db"] if force[0] == "--force" else ["postgres:destroy", *force]
        assert service(root, *args).returncode == 0 and not (services / "db").exists(), force
    missing = service(root, "postgres:destroy", "db", "--force")
    assert missing.returncode == 1 and missing.stderr == " !     Postgres service db does not exist\n"


def check_service_import(root):
    with_service_plugin(root, "postgres")
    service(root, "postgres:create", "db")
    primary, secondary = os.openpty()
    try:
        on_tty = subprocess.run(["python3", str(root / "usr/bin/dokku"), "postgres:import", "db"], env=env(root),
                                stdin=secondary, capture_output=True, text=True)
    finally:
        os.close(primary)
        os.close(secondary)
    assert on_tty.returncode == 1 and on_tty.stderr == " !     No data provided on stdin.\n"
    for subcommand in ("import", "export", "connect"):
        missing = service(root, f"postgres:{subcommand}", "nope")
        assert missing.returncode == 1 and missing.stderr == " !     Postgres service nope does not exist\n"


def check_redis_create(root):
    services = with_service_plugin(root, "redis")
    created = service(root, "redis:create", "cache")
    assert created.returncode == 0 and "=====> Redis container created: cache\n" in created.stdout
    password = (services / "cache/PASSWORD").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", password)
    assert (services / "cache/config/redis.conf").read_text() == f"requirepass {password}\n"
    assert (services / "cache/IMAGE").read_text() + (services / "cache/IMAGE_VERSION").read_text() == "redis\n8.8.0\n"
    assert service(root, "redis:info", "cache", "--dsn").stdout == f"redis://:{password}@dokku-redis-cache:6379\n"
    assert service(root, "redis:info", "cache", "--config-dir").stdout == f"{services}/cache/config\n"
    empty = service(root, "postgres:list")  # the plugins keep apart
    assert "is not a dokku command." in empty.stderr
    assert service(root, "redis:list").stdout == "cache\n"
    assert service(root, "redis:destroy", "cache", "-f").stdout == "=====> Redis container deleted: cache\n"


def check_service_create_flags(root):
    services = with_service_plugin(root, "postgres")
    created = service(root, "postgres:create", "db", "--password", "pw-1", "--image", "postgres", "--image-version",
                      "17.2", "--config-options", "-c max_connections=20", "--custom-env", "A=1;B=two words",
                      "--memory", "512", "--shm-size", "256m", "-N", "net1", "--root-password", "unused")
    assert created.returncode == 0, created.stderr
    assert " !     Specified password may not be as secure as the auto-generated password\n" in created.stderr
    assert "postgres://postgres:pw-1@dokku-postgres-db:5432/db" in created.stdout  # service_info: the DSN
    files = {path.name: path.read_text() for path in (services / "db").iterdir() if path.is_file()}
    assert {name: files[name] for name in ("PASSWORD", "IMAGE", "IMAGE_VERSION", "CONFIG_OPTIONS", "ENV",
                                           "SERVICE_MEMORY", "SHM_SIZE")} == {
        "PASSWORD": "pw-1\n", "IMAGE": "postgres\n", "IMAGE_VERSION": "17.2\n",
        "CONFIG_OPTIONS": "-c max_connections=20\n", "ENV": "A=1\nB=two words\n", "SERVICE_MEMORY": "512\n",
        "SHM_SIZE": "256m\n"}
    assert "ROOTPASSWORD" not in files
    assert (root / "var/lib/dokku/config/postgres/db/initial-network").read_text() == "net1"
    for bad in (["-x"], ["--bogus"], ["--password"], ["--password=pw"], ["extra"]):
        refused = service(root, "postgres:create", "db2", *bad)
        assert refused.returncode == 1 and not (services / "db2").exists(), bad


def check_service_link(root):
    services = with_service_plugin(root, "postgres")
    service(root, "postgres:create", "db")
    assert dokku(root, "apps:create", "web").returncode == 0
    missing = service(root, "postgres:link", "nope", "web")
    assert missing.returncode == 1 and missing.stderr == " !     Postgres service nope does not exist\n"
    no_app = service(root, "postgres:link", "db", "nope")
    assert no_app.returncode == 20 and no_app.stderr == " !     App nope does not exist\n"
    for bad in (["-x"], ["--bogus"]):
        assert service(root, "postgres:link", "db", "web", *bad).returncode == 1, bad
    assert (services / "db/LINKS").read_text() == ""
    linked = service(root, "postgres:link", "db", "web")
    assert linked.returncode == 0, linked.stderr
    dsn = service(root, "postgres:info", "db", "--dsn").stdout.strip()
    assert dokku(root, "config:get", "web", "DATABASE_URL").stdout == f"{dsn}\n"
    assert (services / "db/LINKS").read_text() == "web\n"
    env_file = root / "var/lib/dokku/config/web/ENV"
    assert env_file.read_text() == f'DATABASE_URL="{dsn}"\n' and env_file.stat().st_mode & 0o777 == 0o600
    again = service(root, "postgres:link", "db", "web")
    assert again.returncode == 1 and again.stderr == " !     Already linked as DATABASE_URL\n"
    destroy = service(root, "postgres:destroy", "db", "--force")
    assert destroy.returncode == 1 and "Cannot delete linked service" in destroy.stderr
    old = deployed_app(root, "api")  # a deployed app restarts (config_set), unless -n
    service(root, "postgres:create", "other")
    assert service(root, "postgres:link", "other", "api", "-a", "blue_url", "-q", "pool=5").returncode == 0
    assert old not in docker_state(root)["containers"] and len(docker_state(root)["containers"]) == 1
    blue = service(root, "postgres:info", "other", "--dsn").stdout.strip()
    assert dokku(root, "config:get", "api", "BLUE_URL").stdout == f"{blue}?pool=5\n"
    service(root, "postgres:create", "third")
    before = dict(docker_state(root)["containers"])
    assert service(root, "postgres:link", "third", "api", "--alias", "green", "--no-restart").returncode == 0
    assert docker_state(root)["containers"] == before
    assert sorted(service(root, "postgres:info", "other", "--links").stdout.split()) == ["api"]


def check_redis_link(root):
    with_service_plugin(root, "redis")
    service(root, "redis:create", "cache")
    dokku(root, "apps:create", "web")
    assert service(root, "redis:link", "cache", "web").returncode == 0
    dsn = service(root, "redis:info", "cache", "--dsn").stdout
    assert dokku(root, "config:get", "web", "REDIS_URL").stdout == dsn


def check_config_get(root):
    dokku(root, "apps:create", "web")
    env_file = root / "var/lib/dokku/config/web/ENV"
    env_file.parent.mkdir(parents=True)
    env_file.write_text('A="it\'s \\"x\\" \\$HOME \\`y\\` a\\\\b\\nc"\nN=7\n')  # as godotenv.Write escapes
    assert dokku(root, "config:get", "web", "A").stdout == "it's \"x\" $HOME `y` a\\b\nc\n"
    assert dokku(root, "config:get", "web", "N").stdout == "7\n"
    assert dokku(root, "config:get", "web", "N", "--quoted").stdout == "'7'\n"
    assert dokku(root, "config:get", "--quoted", "web", "A").stdout.startswith("'it'\\''s ")
    unset = dokku(root, "config:get", "web", "NOPE")
    assert (unset.returncode, unset.stdout, unset.stderr) == (1, "", "")
    no_key = dokku(root, "config:get", "web")
    assert no_key.returncode == 1 and no_key.stderr == " !     Expected: key\n"
    two = dokku(root, "config:get", "web", "A", "N")
    assert two.returncode == 1 and two.stderr == " !     Unexpected argument(s): [N]\n"
    flag = dokku(root, "config:get", "web", "A", "--nope")
    assert flag.returncode == 2 and flag.stderr.startswith("unknown flag: --nope")
    missing = dokku(root, "config:get", "nope", "A")
    assert missing.returncode == 20 and missing.stderr == " !     App nope does not exist\n"


def check_ps_report(root):
    running = deployed_app(root)
    assert dokku(root, "ps:report", "demo", "--running").stdout == "true\n"
    (root / "home/dokku/demo/CONTAINER.worker.1").write_text("gone\n")  # a container docker does not know
    assert dokku(root, "ps:report", "demo", "--running").stdout == "mixed\n"
    (root / "home/dokku/demo/CONTAINER.worker.1").unlink()
    dokku(root, "ps:stop", "demo")
    assert dokku(root, "ps:report", "demo", "--running").stdout == "false\n"
    assert docker_state(root)["containers"][running]["status"] == "exited"
    dokku(root, "apps:create", "never-deployed")
    assert dokku(root, "ps:report", "never-deployed", "--running").stdout == "false\n"
    assert dokku(root, "ps:report", "never-deployed", "--deployed").stdout == "false\n"
    invalid = dokku(root, "ps:report", "demo", "--nope")
    assert invalid.returncode == 1 and invalid.stderr.startswith(
        " !     Invalid flag passed, valid flags: --deployed, --processes, --ps-can-scale, ") \
        and invalid.stderr.endswith(", --restore, --running\n")
    two = dokku(root, "ps:report", "demo", "--running", "--deployed")
    assert two.returncode == 1 and two.stderr == " !     ps:report command allows only a single flag\n"
    missing = dokku(root, "ps:report", "nope", "--running")
    assert missing.returncode == 20 and missing.stderr == " !     App nope does not exist\n"


# -- apps and their processes: the upgrade roll's subcommands (tasks/upgrade.py) ---------------------------------
def docker_state(root: Path) -> dict:
    path = root / "docker.json"
    return json.loads(path.read_text()) if path.exists() else {"containers": {}, "images": []}


def docker_log(root: Path) -> list[str]:
    path = root / "docker.log"
    return path.read_text().splitlines() if path.exists() else []


def deployed_app(root: Path, name: str = "demo") -> str:
    """An app as Dokku's docker-local scheduler leaves it deployed: its image, a running container labelled for
    it, its id in CONTAINER.web.1. Returns the container's id."""
    assert dokku(root, "apps:create", name).returncode == 0
    state = docker_state(root)
    state["images"].append(f"dokku/{name}:latest")
    container = f"c0ffee{len(state['containers']):06d}"
    state["containers"][container] = {"name": f"{name}.web.1", "status": "running",
                                      "labels": {"dokku": "", "com.dokku.app-name": name}}
    (root / "docker.json").write_text(json.dumps(state))
    (root / "home/dokku" / name / "CONTAINER.web.1").write_text(container + "\n")
    return container


def check_apps_create(root):
    created = dokku(root, "apps:create", "demo")
    assert created.returncode == 0 and "-----> Creating demo..." in created.stdout
    assert (root / "home/dokku/demo").is_dir()
    assert (root / "var/lib/dokku/config/apps/demo/created-at").read_text().isdigit()
    taken = dokku(root, "apps:create", "demo")
    assert taken.returncode == 1 and " !     Name is already taken" in taken.stderr
    invalid = dokku(root, "apps:create", "Demo_1")
    assert invalid.returncode == 1 and "App name must begin with lowercase alphanumeric character" in invalid.stderr


def check_ps_stop(root):
    none = dokku(root, "ps:stop", "--all")
    assert none.returncode == 0 and "You haven't deployed any applications yet" in none.stderr
    container = deployed_app(root)
    assert dokku(root, "apps:create", "never-deployed").returncode == 0
    stopped = dokku(root, "ps:stop", "--all")
    assert stopped.returncode == 0, stopped.stderr
    assert " !     Running stop in serial mode" in stopped.stderr
    assert " !     App never-deployed has not been deployed" in stopped.stderr
    assert "-----> Running stop against app demo" in stopped.stdout and "-----> Stopping demo" in stopped.stdout
    assert [line for line in docker_log(root) if " ls " not in f" {line} "] == [
        f"container update --restart=no {container}", f"container stop {container}"]
    assert docker_state(root)["containers"][container]["status"] == "exited"
    assert (root / "var/lib/dokku/config/ps/demo/restore").read_text() == "false"  # ps:restore leaves it stopped
    missing = dokku(root, "ps:stop", "nope")  # AppDoesNotExist's ExitCode() is 20
    assert missing.returncode == 20 and " !     App nope does not exist" in missing.stderr


def check_ps_rebuild(root):
    old = deployed_app(root)
    rebuilt = dokku(root, "ps:rebuild", "--all")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert " !     Running rebuild in serial mode" in rebuilt.stderr
    state = docker_state(root)
    [(new, container)] = state["containers"].items()
    assert new != old and container["status"] == "running" and container["name"] == "demo.web.1"
    assert container["labels"] == {"dokku": "", "com.dokku.app-name": "demo", "com.dokku.container-type": "deploy",
                                   "com.dokku.process-type": "web", "com.dokku.dyno": "web.1"}
    assert container["restart"] == "on-failure:10"
    assert (root / "home/dokku/demo/CONTAINER.web.1").read_text() == f"{new}\n"
    assert (root / "var/lib/dokku/config/ps/demo/restore").read_text() == "true"
    assert dokku(root, "apps:create", "imageless").returncode == 0
    failed = dokku(root, "ps:rebuild", "--all")  # every app is tried; the errors are counted
    assert failed.returncode == 1 and "-----> Running rebuild against app imageless" in failed.stdout
    assert "Error running rebuild against app imageless: App image (dokku/imageless:latest) not found" in failed.stderr
    assert " !     rebuild command returned 1 errors" in failed.stderr


def check_cleanup(root):
    running = deployed_app(root)
    exited = deployed_app(root, "old")
    state = docker_state(root)
    state["containers"][exited]["status"] = "exited"
    state["containers"]["f00d"] = {"name": "not-dokkus", "status": "exited", "labels": {}}
    (root / "docker.json").write_text(json.dumps(state))
    assert dokku(root, "cleanup").returncode == 0
    assert sorted(docker_state(root)["containers"]) == sorted([running, "f00d"])  # only Dokku's exited ones go


@dataclasses.dataclass
class Case:
    subcommand: str
    dokku_does: str
    source: str
    check: Callable[[Path], None]


FIDELITY = [
    Case("version", "prints `dokku version <VERSION>`", "dokku v0.38.27 plugins/00_dokku-standard/subcommands/version",
         check_version),
    Case("domains:set-global D...", "validates each name (is_valid_hostname), writes VHOST one domain per line",
         "dokku v0.38.27 plugins/domains/functions domains_set_global", check_domains_set_global),
    Case("nginx:set --global KEY VALUE", "refuses keys outside GLOBAL_KEYS (server-tokens is none of them); stores "
         "the value without a trailing newline, mode 0600, in config/nginx/--global/KEY; no value unsets",
         "dokku v0.38.27 plugins/nginx-vhosts/subcommands/set, plugins/common/properties.go PropertyWrite",
         check_nginx_set),
    Case("plugin:install --core (postinst)", "nginx-vhosts install trigger: dhparam, conf.d/dokku.conf from "
         "dokku.conf.sigil (server_tokens off), server_tokens removed from nginx.conf, the dokku-nginx sudoers",
         "dokku v0.38.27 plugins/nginx-vhosts/install, plugins/nginx-vhosts/templates/dokku.conf.sigil",
         check_nginx_install),
    Case("plugin:install URL --committish TAG --name NAME", "plugn install (clone; refuses another URL), enable "
         "(plugins/enabled/NAME link; refuses an enabled plugin), plugn update TAG (.plugin_committish), install "
         "triggers", "dokku v0.38.27 plugins/plugin/functions download_and_enable_plugin; plugn v0.17.1 "
         "bashenv/plugn.bash", check_plugin_install),
    Case("plugin:update NAME TAG", "only an enabled, non-core plugin; plugn update pins TAG; update triggers",
         "dokku v0.38.27 plugins/plugin/subcommands/update, plugins/plugin/internal-functions", check_plugin_update),
    Case("plugin:enable NAME", "refuses an enabled plugin, links plugins/enabled/NAME",
         "dokku v0.38.27 plugins/plugin/functions enable_plugin", check_plugin_enable),
    Case("plugin:install-dependencies --core", "runs the core plugins' dependencies trigger",
         "dokku v0.38.27 plugins/plugin/subcommands/install-dependencies", check_plugin_install_dependencies),
    Case("letsencrypt:set --global KEY VALUE", "a letsencrypt command only once the plugin is installed; refuses "
         "keys outside VALID_KEYS; property file without trailing newline",
         "dokku-letsencrypt 0.25.1 command-functions cmd-letsencrypt-set", check_letsencrypt_set),
    Case("letsencrypt:cron-job --add", "touches data/letsencrypt/--global/autorenew; without plugins/cron/cron-write "
         "(Dokku has none) writes `@daily .../letsencrypt/cron-job` to dokku's crontab, replacing an older copy",
         "dokku-letsencrypt 0.25.1 internal-functions fn-letsencrypt-cron-job-add, config LETSENCRYPT_CRON_JOB",
         check_letsencrypt_cron_job),
    Case("ssh-keys:add NAME (key on stdin)", "sshcommand acl-add: refuses a duplicate name or fingerprint, appends "
         'command="FINGERPRINT=... NAME=\\"...\\" `cat ~/.sshcommand` $SSH_ORIGINAL_COMMAND",<options> KEY',
         "dokku v0.38.27 plugins/ssh-keys/subcommands/add; sshcommand v0.20.2 sshcommand-acl-add",
         check_ssh_keys_add),
    Case("ssh-keys:list", "sshcommand list: `FINGERPRINT NAME=\"...\" SSHCOMMAND_ALLOWED_KEYS=\"...\"` per key, or JSON",
         "dokku v0.38.27 plugins/ssh-keys/subcommands/list; sshcommand v0.20.2 sshcommand-list", check_ssh_keys_list),
    Case("ssh-keys:remove NAME", "sshcommand acl-remove deletes the NAME line",
         "dokku v0.38.27 plugins/ssh-keys/subcommands/remove; sshcommand v0.20.2 sshcommand-acl-remove",
         check_ssh_keys_remove),
    Case("postgres:create NAME", "a command once the plugin is installed; refuses names outside [A-Za-z0-9_-]+ with "
         "a message naming [A-Za-z0-9_]+, and an existing service; writes services/postgres/NAME/{data/,LINKS,"
         "PASSWORD (openssl rand -hex 16, 0640),ENV,CONFIG_OPTIONS,IMAGE,IMAGE_VERSION,DATABASE_NAME (. and - made _)"
         ",ID (--cidfile)}; the image is the Dockerfile's postgres:18.4; then `createdb -E utf8 DATABASE_NAME`",
         "dokku-postgres 1.48.0 functions service_create, service_create_container; common-functions "
         "is_valid_service_name, service_commit_config, write_database_name; config; Dockerfile", check_service_create),
    Case("postgres:list", "the service directories' names, one a line, after a `=====> Postgres services` line that "
         "is *_quiet (the entry script sets DOKKU_QUIET_OUTPUT without a tty, and for --quiet); none: the warning "
         "` !     There are no Postgres services` on stderr, exit 0",
         "dokku-postgres 1.48.0 common-functions service_list, fn-services-list; dokku v0.38.27 dokku "
         "(`! has_tty && DOKKU_QUIET_OUTPUT=1`), plugins/common/functions parse_args, dokku_log_info2_quiet",
         check_service_list),
    Case("postgres:exists NAME",
         "`-----> Service NAME exists`, or ` !     Postgres service NAME does not exist`, exit 1",
         "dokku-postgres 1.48.0 subcommands/exists, common-functions verify_service_name", check_service_exists),
    Case("postgres:info NAME [--FLAG]", "one line per flag_map entry (`%-20s %-25s` of the capitalised key), or the "
         "value of one flag; --dsn postgres://postgres:PASSWORD@dokku-postgres-NAME:5432/DATABASE_NAME; an unknown "
         "flag lists the valid ones", "dokku-postgres 1.48.0 common-functions service_info, service_dns_hostname; "
         "functions service_url", check_service_info),
    Case("postgres:destroy NAME [--force]", "refuses a linked service (LINKS not empty); without force/-f/--force "
         "(or the global --force) reads the name from stdin, a mismatch aborts with exit 1, end of input exits 1 "
         "silently (`read` under set -e); removes SERVICE_ROOT and config/postgres/NAME; `=====> Postgres container "
         "deleted: NAME`", "dokku-postgres 1.48.0 subcommands/destroy; dokku v0.38.27 plugins/common/functions "
         "parse_args (--force sets DOKKU_APPS_FORCE_DELETE)", check_service_destroy),
    Case("postgres:import NAME (dump on stdin)", "refuses a tty on stdin (` !     No data provided on stdin.`); "
         "then `pg_restore -cO --if-exists -d DATABASE_NAME -U postgres -w` reads stdin. export: `pg_dump -Fc "
         "--no-acl --no-owner -U postgres -w DATABASE_NAME` to stdout; connect: `psql -v ON_ERROR_STOP=1 -U postgres "
         "DATABASE_NAME` on stdin (round trip on the lab: tests/test_e2e.py _check_service_dumps)",
         "dokku-postgres 1.48.0 functions service_import, service_export, service_connect; subcommands/import, "
         "export, connect", check_service_import),
    Case("redis:create NAME", "as postgres (the same common-functions and subcommands), with PASSWORD from "
         "openssl rand -hex 32, config/redis.conf `requirepass PASSWORD`, redis:8.8.0, --dsn "
         "redis://:PASSWORD@dokku-redis-NAME:6379, --config-dir SERVICE_ROOT/config. export: LASTSAVE, BGSAVE, "
         "LASTSAVE until it changes (for good, when the last save was in the same second), then /data/dump.rdb to "
         "stdout; import: the container removed, stdin written to "
         "data/dump.rdb, the service started; connect: redis-cli -a PASSWORD",
         "dokku-redis 1.43.0 functions service_create, service_create_container, service_url, service_export, "
         "service_import, service_connect; config (PLUGIN_CONFIG_SUFFIX=config); Dockerfile", check_redis_create),
    Case("postgres:create NAME --FLAG VALUE...", "service_parse_args maps --alias --config-options --custom-env "
         "--database --image-version --initial-network --image --memory --no-restart --password "
         "--post-create-network --post-start-network --querystring --restart-apps --root-password --shm-size --user to "
         "getopts `na:c:C:d:i:I:m:n:N:p:P:q:R:r:s:S:u:`; create writes PASSWORD (-p, warning it may be less secure), "
         "ENV (-C, `;` made newlines), CONFIG_OPTIONS (-c), SERVICE_MEMORY (-m), SHM_SIZE (-s), IMAGE (-i), "
         "IMAGE_VERSION (-I), the initial-network property (-N); no ROOTPASSWORD (-r unused); then prints service_info "
         "(the DSN with the password). getopts has no `?` case: an unknown flag, a missing value, a trailing operand "
         "are only warned there and ignored; the stand-in refuses them (stricter, on purpose)",
         "dokku-postgres 1.48.0 subcommands/create (#F flags), common-functions service_parse_args, "
         "service_commit_config; functions service_create, service_create_container (ends with service_info); "
         "dokku-redis 1.43.0 the same", check_service_create_flags),
    Case("postgres:link SERVICE APP [-a ALIAS] [-q QS] [-n]", "the app must exist (verify_app_name: exit 20 `App X "
         "does not exist`), then the service; refuses a service the app's config holds already (`Already linked as "
         "KEY`); adds the app to LINKS (sorted, unique); config_set APP ALIAS_URL=DSN[?QS] (default alias DATABASE, "
         "-a upper-cased, _URL dropped), which restarts a deployed app unless -n / --no-restart; a linked service "
         "cannot be destroyed",
         "dokku-postgres 1.48.0 subcommands/link, common-functions service_link, add_to_links_file; config "
         "(PLUGIN_DEFAULT_ALIAS=DATABASE); dokku v0.38.27 plugins/common/functions verify_app_name "
         "(DOKKU_FAIL_EXIT_CODE=20)", check_service_link),
    Case("redis:link SERVICE APP", "as postgres:link, with REDIS_URL (PLUGIN_DEFAULT_ALIAS=REDIS)",
         "dokku-redis 1.43.0 subcommands/link, common-functions service_link, config", check_redis_link),
    Case("config:get APP KEY [--quoted]", "the app's env is DOKKU_LIB_ROOT/config/APP/ENV as godotenv.Write makes it "
         "(sorted `KEY=INT` or `KEY=\"...\"` with \\ \\n \\r \" ! $ ` escaped, mode 0600); the app must exist "
         "(exit 20); no key: `Expected: key`; two: `Unexpected argument(s): [..]`; an unset key exits 1 silently; "
         "an unknown flag is pflag's `unknown flag: --X`, exit 2",
         "dokku v0.38.27 plugins/config/src/subcommands/subcommands.go (get: pflag ExitOnError), functions.go SubGet, "
         "config.go SetMany, environment.go Write/getAppFile; joho/godotenv v1.5.1 (plugins/config/go.mod) "
         "godotenv.go Marshal, doubleQuoteEscape, Write; plugins/common/common.go AppDoesNotExist (ExitCode 20)",
         check_config_get),
    Case("ps:report APP --running", "true when every container in CONTAINER / CONTAINER.* runs, false when none "
         "(or there is none), else mixed; one info flag only; a flag outside the report's is `Invalid flag passed, "
         "valid flags: ` and the sorted list, comma-separated; a missing app exits 20",
         "dokku v0.38.27 plugins/ps/report.go ReportSingleApp, reportRunningState; plugins/ps/functions.go "
         "getRunningState; plugins/scheduler-docker-local/scheduler-app-status; plugins/common/common.go "
         "ParseReportArgs, ReportSingleApp; plugins/common/functions get_app_container_ids", check_ps_report),
    Case("apps:create APP", "checks the name (^[a-z0-9][a-z0-9.-]*$), refuses a taken one, makes DOKKU_ROOT/APP and "
         "the apps created-at property", "dokku v0.38.27 plugins/apps/functions.go createApp, plugins/common/common.go "
         "IsValidAppName", check_apps_create),
    Case("ps:stop --all", "every app in turn (serial: --parallel defaults to 0, warned); an app not deployed is "
         "skipped with a warning; each running container of the app: `container update --restart=no`, then "
         "`container stop`; post-stop writes the ps restore property false; no apps: a warning, exit 0",
         "dokku v0.38.27 plugins/ps/subcommands.go CommandStop, plugins/ps/ps.go Stop, plugins/common/parallel.go "
         "RunCommandAgainstAllAppsSerially, plugins/scheduler-docker-local/scheduler-stop, plugins/ps/triggers.go "
         "TriggerPostStop", check_ps_stop),
    Case("ps:rebuild --all", "every app in turn; each failure is warned and counted (`rebuild command returned N "
         "errors`, exit 1); a deploy runs the app's image with the labels dokku, com.dokku.app-name, "
         "com.dokku.container-type=deploy, process-type, dyno and restart policy on-failure:10, its id in "
         "CONTAINER.web.1, restore true", "dokku v0.38.27 plugins/ps/ps.go Rebuild, plugins/common/parallel.go, "
         "plugins/scheduler-docker-local/scheduler-deploy and bin/scheduler-deploy-process-container, plugins/ps/ps.go "
         "DefaultProperties, plugins/ps/triggers.go TriggerCorePostDeploy", check_ps_rebuild),
    Case("cleanup (prerm)", "removes the exited and dead containers labelled DOKKU_CONTAINER_LABEL (dokku), nobody "
         "else's", "dokku v0.38.27 plugins/00_dokku-standard/subcommands/cleanup, plugins/common/docker.go "
         "DockerCleanup and listContainers, dokku (DOKKU_CONTAINER_LABEL=dokku)", check_cleanup),
]


@pytest.mark.parametrize("case", FIDELITY, ids=lambda case: case.subcommand.split()[0])
def test_standin_does_what_dokku_does(case, root):
    case.check(root)


def test_every_subcommand_the_deploy_runs_has_a_case():
    """The `dokku X` commands of every task (tasks/dokku.py's, the backups' exports, the upgrade's) all appear in the table."""
    repository = Path(__file__).resolve().parents[1]
    source = "".join(path.read_text() for path in [*(repository / "tasks").glob("*.py"),
                                                   repository / "templates/backup/mindroom-backup.j2"])
    used = set(re.findall(r"\bdokku ([a-z-]+:[a-z-]+)", source))
    covered = {case.subcommand.split()[0] for case in FIDELITY}
    covered |= {"postgres:export", "redis:export"}  # their cases: postgres:import's, redis:create's
    advised = {"git:from-image"}  # named in the restore's message for the operator, never run by the project
    assert used and used - advised <= covered, used - advised - covered


def test_control_fields_are_the_releases():
    control = (STANDIN / "control").read_text()
    fields = dict(line.split(": ", 1) for line in control.splitlines() if not line.startswith(" ") and ": " in line)
    assert {name: fields[name] for name in CONTROL} == CONTROL
    assert {name: version for name, (version, _) in aptrepo.DEPENDENCIES.items()} == DEPENDENCY_VERSIONS


def test_dokkus_own_dependencies_are_in_the_local_repo():
    """Each name in Depends/Pre-Depends not from Debian 13 is one the local repo builds, and nothing else is."""
    names = {alternative.split()[0] for field in ("Depends", "Pre-Depends")
             for alternative in CONTROL[field].replace("|", ",").split(",")}
    assert NOT_IN_DEBIAN | {"sshcommand"} == set(aptrepo.DEPENDENCIES) and NOT_IN_DEBIAN < names
    assert "herokuish" not in aptrepo.DEPENDENCIES  # a Recommends, which the deploy does not install (README)
    fields = CONTROL["Depends"] + CONTROL["Pre-Depends"]
    assert all(name in fields and choice.split()[0] not in aptrepo.DEPENDENCIES
               for name, choice in DEBIAN_CHOICES.items())


@pytest.mark.parametrize("key_file, added", [("exists", True), ("missing", False)])
def test_postinst_adds_the_key_file_whatever_skip_key_file_says(tmp_path, key_file, added):
    """Dokku v0.38.27 debian/postinst dpkg-handling: `db_get dokku/key_file; if [ -f "$RET" ]; then sshcommand
    acl-add dokku default <"$RET"`; dokku/skip_key_file is never read. Hence the deploy's preseed points key_file at
    a path that cannot exist."""
    key = tmp_path / "id.pub"
    if key_file == "exists":
        key.write_text(KEY + "\n")
    (tmp_path / "home/dokku").mkdir(parents=True)
    answers = {"dokku/vhost_enable": "true", "dokku/hostname": "d.example", "dokku/key_file": str(key),
               "dokku/skip_key_file": "true"}
    postinst_functions(tmp_path, tmp_path, ["dpkg-handling"], answers)
    log = tmp_path / "sshcommand.log"
    assert (log.read_text() == f"sshcommand acl-add dokku default {KEY}\n") if added else not log.exists()
    assert (tmp_path / "home/dokku/VHOST").read_text() == "d.example\n"  # echo "$RET" > VHOST


def test_deploy_preseeds_a_key_file_that_cannot_exist():
    from tasks.dokku import NO_KEY_FILE

    assert not Path(NO_KEY_FILE).exists() and Path(NO_KEY_FILE).parent == Path("/nonexistent")
    preseed = (Path(__file__).resolve().parents[1] / "templates/dokku/dokku.preseed.j2").read_text()
    assert "dokku dokku/key_file string {{ key_file }}" in preseed and "skip_key_file" not in preseed.split("\n", 3)[3]


def test_prerm_cleans_up_before_an_upgrade(root):
    """Dokku v0.38.27 debian/prerm: not a purge, so `echo "Processing $1"` and `dokku cleanup`: a stopped app's
    container is gone after the upgrade (hence `ps:rebuild --all` after it, docs/getting-started/upgrading)."""
    stopped = deployed_app(root)
    dokku(root, "ps:stop", "--all")
    prerm = subprocess.run(["bash", str(STANDIN / "prerm"), "upgrade", "0.38.28"], env=env(root), text=True,
                           capture_output=True)
    assert prerm.returncode == 0, prerm.stderr
    assert prerm.stdout.startswith("Processing upgrade\n") and "-----> Cleaning up..." in prerm.stdout
    assert stopped not in docker_state(root)["containers"]
