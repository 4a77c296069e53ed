"""The four platform service images for the testbed, built and pushed without a Docker engine.

Each image is one layer: busybox-static (from the build machine's busybox-static package) with /bin/sh and
/bin/wget links, and `busybox httpd` serving /www on the service's container port, where /health answers
"ok", / names the service and /provision answers with the service's name. The layer is a reproducible tarball (fixed mtimes, owners, gzip timestamp), so the digests are
stable and a re-push uploads nothing. Pushed through the registry's HTTP API (Docker v2 manifest).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import ssl
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from settings import PLATFORM_SERVICES

BUSYBOX = Path("/bin/busybox")
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def _layer(service) -> bytes:
    """An uncompressed, reproducible tarball of the image's root filesystem."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        def add(name: str, data: bytes | None = None, mode: int = 0o644, kind=tarfile.REGTYPE, link: str = ""):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, 0, link
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        for directory in ("bin", "www", "tmp"):
            add(directory, mode=0o1777 if directory == "tmp" else 0o755, kind=tarfile.DIRTYPE)
        add("bin/busybox", BUSYBOX.read_bytes(), mode=0o755)
        for applet in ("sh", "wget"):
            add(f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox")
        add("www/index.html", f"<h1>{service.name}</h1>\n<p>testbed stand-in</p>\n".encode())
        add("www/health", b"ok\n")
        # Every stand-in answers /provision with its own name, so a test can tell where nginx routed it.
        add("www/provision", f"{service.name}\n".encode())
    return buffer.getvalue()


def build(service) -> tuple[bytes, bytes, bytes]:
    """Return (manifest, config, compressed layer) of the service's image."""
    layer = _layer(service)
    compressed = gzip.compress(layer, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/busybox", "httpd", "-f", "-p", str(service.container_port), "-h", "/www"],
                   "ExposedPorts": {f"{service.container_port}/tcp": {}},
                   "Labels": {"org.mindroom.testbed": "stand-in"}},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": _digest(config)},
        "layers": [{"mediaType": LAYER_TYPE, "size": len(compressed), "digest": _digest(compressed)}],
    }).encode()
    return manifest, config, compressed


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """Just enough of the registry's v2 API to push an image."""

    def __init__(self, address: str, user: str, token: str, ca_cert: Path):
        self.base = f"https://{address}/v2"
        self.auth = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
        self.context = ssl.create_default_context(cafile=str(ca_cert))

    def _request(self, method: str, url: str, data: bytes | None = None, headers: dict | None = None):
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Authorization": self.auth, **(headers or {})})
        return urllib.request.urlopen(request, timeout=30, context=self.context)

    def _has_blob(self, repository: str, digest: str) -> bool:
        try:
            with self._request("HEAD", f"{self.base}/{repository}/blobs/{digest}"):
                return True
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return False
            raise

    def push_blob(self, repository: str, data: bytes) -> None:
        digest = _digest(data)
        if self._has_blob(repository, digest):
            return
        with self._request("POST", f"{self.base}/{repository}/blobs/uploads/", data=b"") as response:
            location = response.headers["Location"]
        if location.startswith("/"):
            location = self.base[: -len("/v2")] + location
        separator = "&" if "?" in location else "?"
        with self._request("PUT", f"{location}{separator}digest={digest}", data=data,
                           headers={"Content-Type": "application/octet-stream"}):
            pass

    def push_image(self, repository: str, tag: str, manifest: bytes, blobs: list[bytes]) -> None:
        for blob in blobs:
            self.push_blob(repository, blob)
        with self._request("PUT", f"{self.base}/{repository}/manifests/{tag}", data=manifest,
                           headers={"Content-Type": MANIFEST_TYPE}):
            pass


def push_all(address: str, user: str, token: str, ca_cert: Path, tag: str = "latest") -> None:
    registry = Registry(address, user, token, ca_cert)
    for service in PLATFORM_SERVICES:
        manifest, config, layer = build(service)
        registry.push_image(service.name, tag, manifest, [config, layer])
