"""tasks/dokku.py on the Dokku hosts: version (held), global settings, plugins, ssh-keys, dokku-deploy's sudo,
and Dokku's data on the volume. Checked through Dokku's own CLI where it has one."""

import pytest

from tasks.dokku import sha256_fingerprint
from tests.hosts import live
from tests.hosts.roles import group_data

testinfra_hosts = live.hosts("dokku")
DATA = group_data("dokku")
USER = DATA["deploy_user"]


def test_dokku_version_and_hold(host):
    assert host.check_output("dokku version") == f"dokku version {DATA['dokku_version']}"
    assert "dokku" in host.check_output("apt-mark showhold").split()


@pytest.mark.parametrize("package", ["docker.io", "docker-compose", "docker-buildx"])
def test_dokkus_docker_dependencies_are_debians(host, package):
    """Dokku's Depends `docker.io | ...`, `docker-compose-plugin | moby-compose | docker-compose`,
    `docker-buildx-plugin | moby-buildx | docker-buildx`, satisfied by Debian's packages."""
    assert host.package(package).is_installed


def test_global_domain(host):
    assert host.check_output("dokku domains:report --global --domains-global-vhosts").split() == [DATA["domain"]]


@pytest.mark.parametrize("key", sorted(DATA["dokku_global_properties"]))
def test_global_property(host, key):
    plugin, _, prop = key.partition("/")
    # where `dokku <plugin>:set --global` stores it (Dokku's property store: the value, no trailing newline)
    stored = host.file(f"/var/lib/dokku/config/{plugin}/--global/{prop}")
    assert stored.content_string == DATA["dokku_global_properties"][key]


def test_nginx_sends_no_version(host):
    """Dokku's /etc/nginx/conf.d/dokku.conf has `server_tokens off;` (there is no nginx:set key for it). Dokku's
    catch-all site answers no request (444), so ask with a Host nginx rejects itself: its 400 names the server."""
    assert "server_tokens off;" in host.file("/etc/nginx/conf.d/dokku.conf").content_string
    assert host.run("nginx -t").rc == 0
    headers = host.check_output("curl -s -D - -o /dev/null -H 'Host: bad..host' http://127.0.0.1/")
    assert headers.startswith("HTTP/1.1 400")
    server = [line for line in headers.splitlines() if line.lower().startswith("server:")]
    assert server and server[0].strip().lower() == "server: nginx"


@pytest.mark.parametrize("plugin", sorted(DATA["dokku_plugins"]))
def test_plugin_enabled_at_its_tag(host, plugin):
    _url, tag = DATA["dokku_plugins"][plugin]
    assert host.file(f"/var/lib/dokku/plugins/enabled/{plugin}").is_symlink  # plugn's mark of an enabled plugin
    assert host.file(f"/var/lib/dokku/plugins/available/{plugin}/.plugin_committish").content_string == f"{tag}\n"
    listed = {line.split()[0]: line.split() for line in host.check_output("dokku plugin:list").splitlines() if line}
    assert listed[plugin][2] == "enabled"


def test_resource_limits_are_a_core_plugin(host):
    assert host.run("dokku plugin:installed resource").rc == 0


def test_cron_runs_for_the_renewal_job(host):
    assert host.service("cron").is_enabled
    assert host.service("cron").is_running


def test_letsencrypt_renewal_job(host):
    """`letsencrypt:cron-job --add` marks autorenew and writes the plugin's fallback line; Dokku's cron plugin, when
    it rewrites dokku's crontab, writes the job from the plugin's cron-entries instead."""
    assert host.file("/var/lib/dokku/data/letsencrypt/--global/autorenew").is_file
    crontab = host.check_output("crontab -l -u dokku")
    assert "@daily /var/lib/dokku/plugins/available/letsencrypt/cron-job" in crontab or \
        "dokku letsencrypt:auto-renew" in crontab


def test_no_key_from_the_package(host):
    """The postinst adds debconf's dokku/key_file as ssh-key "default" when that file exists; the deploy points it
    at a path that cannot exist."""
    assert 'NAME=\\"default\\"' not in host.file("/home/dokku/.ssh/authorized_keys").content_string


def test_provisioner_ssh_key_by_fingerprint(host):
    listed = host.check_output("dokku ssh-keys:list")
    wanted = sha256_fingerprint(DATA["provisioner_public_key"])
    assert f'{wanted} NAME="{DATA["provisioner_key_name"]}"' in listed


def test_deploy_user(host):
    """dokku-deploy is in no supplementary group: docker is root (mount / into a container), sudo's %sudo rule
    allows everything. Its one key is the provisioner's; it has no password."""
    user = host.user(USER)
    assert user.exists
    assert user.groups == [USER]
    keys = host.file(f"{user.home}/.ssh/authorized_keys").content_string
    assert keys.splitlines() == [DATA["provisioner_public_key"]]
    assert host.check_output(f"passwd -S {USER}").split()[1] in ("L", "NP") or \
        host.check_output(f"getent shadow {USER}").split(":")[1] in ("!", "*", "!*")


def test_deploy_user_sudo_lists_dokku_only(host):
    listing = host.check_output(f"sudo -l -U {USER}")
    allowed = listing.partition(f"User {USER} may run the following commands on")[2].splitlines()[1:]
    assert [line.strip() for line in allowed if line.strip()] == ["(root) NOPASSWD: /usr/bin/dokku"], listing
    assert host.run(f"sudo -u {USER} sudo -n /usr/bin/dokku version").rc == 0
    for command in ("/bin/true", "/bin/bash -c id", "/usr/bin/docker ps"):
        assert host.run(f"sudo -u {USER} sudo -n {command}").rc != 0, f"{USER} may run {command} via sudo"
    assert host.run(f"sudo -u {USER} docker ps").rc != 0, f"{USER} reaches the Docker daemon (that is root)"


def test_sudoers_file(host):
    dropin = host.file(f"/etc/sudoers.d/{USER}")
    assert dropin.mode == 0o440 and dropin.user == "root"
    assert host.run("visudo -c").rc == 0


@pytest.mark.parametrize("path, name", [("/home/dokku", "dokku-home"), ("/var/lib/dokku/services", "dokku-services")])
def test_dokku_data_on_volume(host, path, name):
    target = f"{DATA['mount_point']}/{name}"
    assert host.file(path).linked_to == target
    assert host.check_output(f"findmnt -n -o TARGET -T {target}") == DATA["mount_point"]


def test_deployed_apps_run(host):
    """Every app Dokku deployed (a CONTAINER.* file in its directory) runs a container, unless it was stopped on
    purpose (`dokku ps:stop` writes the ps restore property false): after a reboot or an upgrade roll too."""
    deployed = host.check_output(
        "for d in /home/dokku/*/; do a=$(basename \"$d\"); ls \"$d\"CONTAINER.* >/dev/null 2>&1 || continue; "
        "[ \"$(cat /var/lib/dokku/config/ps/$a/restore 2>/dev/null)\" = false ] || echo \"$a\"; done").split()
    running = host.check_output("docker container ls --filter label=com.dokku.app-name "
                                "--format '{{.Label \"com.dokku.app-name\"}}'").split()
    assert set(deployed) <= set(running), f"deployed apps without a running container: {set(deployed) - set(running)}"
