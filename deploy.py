"""Table of contents: the tasks each group of hosts gets, in order. Logic lives in tasks/.

Order matters across hosts: pyinfra runs each operation on every host before the next one, so the
platform's key is generated before the Dokku hosts authorize it.
"""

from pyinfra import host

from tasks import base, docker, dokku, keys, nginx, platform, tls, volume

base.configure()
volume.mount()
docker.install()

if "platform" in host.groups:
    keys.platform_key()

if "dokku" in host.groups:
    dokku.install()
    dokku.configure()
    keys.authorize_platform_key()

if "platform" in host.groups:
    platform.services()
    nginx.configure()
    tls.certificates()
