"""A throwaway certificate authority for the testbed's stand-ins (Pebble's listener, the registry).

Made with the openssl CLI under LAB/ca. Guests trust it through the settings that point at its
certificate (ACME_CA_BUNDLE, REGISTRY_CA_CERT); nothing here is used in production.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

CA_DAYS = 30
CA_SUBJECT = "/CN=mindroom testbed throwaway CA"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def ensure_ca(lab: Path) -> tuple[Path, Path]:
    """Return (certificate, key) of the lab's CA, creating it on first use."""
    directory = lab / "ca"
    cert, key = directory / "ca.crt", directory / "ca.key"
    if cert.is_file() and key.is_file():
        return cert, key
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", str(CA_DAYS), "-subj", CA_SUBJECT,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    cert.chmod(0o644)
    return cert, key


def server_cert(lab: Path, name: str, ips: list[str], dns: list[str] = ()) -> tuple[Path, Path]:
    """Return (certificate, key) for a server known by these IPs/names, signed by the lab's CA."""
    ca_cert, ca_key = ensure_ca(lab)
    cert, key = lab / "ca" / f"{name}.crt", lab / "ca" / f"{name}.key"
    san = ",".join([f"IP:{ip}" for ip in ips] + [f"DNS:{host}" for host in dns])
    if cert.is_file() and key.is_file() and _has_san(cert, san):
        return cert, key
    csr = lab / "ca" / f"{name}.csr"
    # ECDSA P-256: every TLS client (Go's crypto/tls, certbot's requests) accepts it.
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    extensions = lab / "ca" / f"{name}.ext"
    extensions.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", str(CA_DAYS), "-out", str(cert), "-extfile", str(extensions))
    csr.unlink()
    return cert, key


def _has_san(cert: Path, san: str) -> bool:
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True).stdout
    wanted = [part.replace("IP:", "IP Address:") for part in san.split(",")]
    return all(part in text for part in wanted)
