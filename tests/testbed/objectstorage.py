"""An S3-compatible Object Storage stand-in (Hetzner's, https://fsn1.your-objectstorage.com): HTTPS on the bridge
address with a certificate from the lab's CA, one access key, AWS Signature Version 4 checked on every request.

restic on the guests talks to it for real (BACKUP_REPOSITORY=s3:https://10.213.0.1:9443/<bucket>, the credentials
in BACKUP_S3_ACCESS_KEY_ID / BACKUP_S3_SECRET_ACCESS_KEY, the lab's CA in BACKUP_CA_CERT: restic's --cacert; in
production BACKUP_CA_CERT is unset and restic trusts the system's CAs, the same code path).

Why an own server (stdlib http.server + ssl): it is small, has no dependency, and is strict where restic's client
(minio-go) can be wrong: every request must carry a valid SigV4 Authorization header for the one known key and the
stand-in's region, a fresh x-amz-date, an x-amz-content-sha256 that matches the body (or UNSIGNED-PAYLOAD) and a
Content-MD5 that matches it. moto's server authenticates nothing unless INITIAL_NO_AUTH_ACTION_COUNT is set, and
then against the IAM users it emulates (getmoto/moto docs/docs/iam.rst: "the current implementation is very
basic"), and it answers far more than restic uses: a wrong key or signature is easy to let through by accident.
What it answers is what minio-go sends for restic (tests/test_objectstorage_standin.py records these S3 facts,
S3_FACTS, with their sources): path-style requests only (minio-go uses them for any endpoint that is not AWS,
Google or Aliyun), GetBucketLocation, HeadBucket, CreateBucket, ListObjectsV2 (prefix, delimiter, start-after,
continuation-token, max-keys, encoding-type=url), PutObject, GetObject (one Range), HeadObject, DeleteObject.
Anything else is 501 NotImplemented. Objects are files under LAB/objectstorage/data/<bucket>/ (the key
URL-quoted), their MD5 (the ETag) in .etags/ beside them.

    python -m tests.testbed.objectstorage serve --listen IP:PORT --cert C --key K --data DIR --credentials FILE
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import ssl
import string
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from tests.testbed import ca, layout, procs

PORT = 9443
REGION = "fsn1"  # Hetzner's location names are the regions (https://fsn1.your-objectstorage.com)
BUCKET = "mindroom-testbed"
PREFIX = "backups"  # BACKUP_REPOSITORY=s3:https://<endpoint>/<bucket>/<prefix>; each host below it
MAX_SKEW_SECONDS = 15 * 60
MAX_KEYS = 1000
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNRESERVED = string.ascii_letters + string.digits + "-._~"
# (status, message) of each error code the stand-in answers; the codes, statuses and messages as S3 has them.
ERRORS = {
    "AccessDenied": (403, "Access Denied"),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed"),
    "BadDigest": (400, "The Content-MD5 you specified did not match what we received."),
    "BucketAlreadyOwnedByYou": (409, "Your previous request to create the named bucket succeeded and you already "
                                     "own it."),
    "IllegalLocationConstraintException": (400, "The specified location-constraint is not valid for this "
                                                "endpoint."),
    "InvalidAccessKeyId": (403, "The AWS Access Key Id you provided does not exist in our records."),
    "InvalidArgument": (400, "Invalid Argument"),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidDigest": (400, "The Content-MD5 you specified is not valid."),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid Request"),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NotImplemented": (501, "A header you provided implies functionality that is not implemented"),
    "RequestTimeTooSkewed": (403, "The difference between the request time and the current time is too large."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the signature you provided. "
                                   "Check your key and signing method."),
    "XAmzContentSHA256Mismatch": (400, "The provided 'x-amz-content-sha256' header does not match what was "
                                       "computed."),
}
_AUTHORIZATION_RE = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>[0-9]{8})/(?P<region>[^/,\s]+)"
                               r"/s3/aws4_request, ?SignedHeaders=(?P<headers>[a-z0-9;-]+), ?"
                               r"Signature=(?P<signature>[0-9a-f]{64})")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


class S3Error(Exception):
    def __init__(self, code: str, resource: str = "", message: str = "", **extra: str):
        super().__init__(code)
        self.code, self.resource, self.extra = code, resource, extra
        self.status, default = ERRORS[code]
        self.message = message or default


# -- Signature Version 4 (the client's side is sign(); the server's is Handler._authenticate) ----------------------
def uri_encode(text: str, keep_slash: bool) -> str:
    """SigV4's URI encoding: every byte but the unreserved characters as %XY (uppercase), '/' kept in paths."""
    return quote(text, safe=UNRESERVED + ("/" if keep_slash else ""))


def canonical_query(raw_query: str) -> str:
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        name, _, value = part.partition("=")
        pairs.append((uri_encode(unquote(name), False), uri_encode(unquote(value), False)))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def signing_key(secret: str, date: str, region: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(secret: str, method: str, raw_path: str, raw_query: str, headers: dict[str, str],
              signed: list[str], payload_hash: str, amz_date: str, region: str) -> str:
    """The signature of a request; headers maps lower-case names to their values."""
    canonical_headers = "".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed)
    canonical = "\n".join([method, uri_encode(unquote(raw_path), True), canonical_query(raw_query),
                           canonical_headers, ";".join(signed), payload_hash])
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    return hmac.new(signing_key(secret, amz_date[:8], region), to_sign.encode(), hashlib.sha256).hexdigest()


def sign(method: str, host: str, raw_path: str, raw_query: str, body: bytes, access_key: str, secret: str,
         region: str = REGION, when: datetime | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Headers (with Authorization) of a SigV4-signed request, as minio-go makes them (for the offline tests)."""
    amz_date = (when or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    headers = {"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
               **{name.lower(): value for name, value in (extra or {}).items()}}
    signed = sorted(headers)
    value = signature(secret, method, raw_path, raw_query, headers, signed, headers["x-amz-content-sha256"],
                      amz_date, region)
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{amz_date[:8]}/{region}/s3/aws4_request,"
                                f" SignedHeaders={';'.join(signed)}, Signature={value}")
    return headers


# -- the server -----------------------------------------------------------------------------------------------------
class Store:
    """Buckets are directories under root; an object is a file named by its URL-quoted key, its MD5 in .etags/."""

    def __init__(self, root: Path):
        self.root = root
        self.lock = threading.Lock()

    def bucket(self, name: str) -> Path:
        path = self.root / name
        if not path.is_dir():
            raise S3Error("NoSuchBucket", f"/{name}", BucketName=name)
        return path

    def create_bucket(self, name: str) -> None:
        if not _BUCKET_RE.fullmatch(name) or ".." in name:
            raise S3Error("InvalidBucketName", f"/{name}", BucketName=name)
        with self.lock:
            if (self.root / name).is_dir():
                raise S3Error("BucketAlreadyOwnedByYou", f"/{name}", BucketName=name)
            (self.root / name / ".etags").mkdir(parents=True)

    def object(self, bucket: str, key: str) -> Path:
        path = self.bucket(bucket) / quote(key, safe="")
        if not path.is_file():
            raise S3Error("NoSuchKey", f"/{bucket}/{key}", Key=key)
        return path

    def etag(self, path: Path) -> str:
        return (path.parent / ".etags" / path.name).read_text()

    def put(self, bucket: str, key: str, body: bytes) -> str:
        directory = self.bucket(bucket)
        if not key or len(key.encode()) > 1024:
            raise S3Error("InvalidArgument", f"/{bucket}/{key}", "The key must be 1 to 1024 bytes long.")
        name, etag = quote(key, safe=""), hashlib.md5(body).hexdigest()
        tmp = directory / f".tmp-{uuid.uuid4().hex}"
        tmp.write_bytes(body)
        (directory / ".etags" / name).write_text(etag)
        os.replace(tmp, directory / name)
        return etag

    def delete(self, bucket: str, key: str) -> None:
        directory = self.bucket(bucket)
        for path in (directory / quote(key, safe=""), directory / ".etags" / quote(key, safe="")):
            path.unlink(missing_ok=True)

    def keys(self, bucket: str) -> list[tuple[str, Path]]:
        directory = self.bucket(bucket)
        return sorted((unquote(path.name), path) for path in directory.iterdir()
                      if path.is_file() and not path.name.startswith("."))


def _http_date(seconds: float) -> str:
    return formatdate(seconds, usegmt=True)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mindroom-testbed-objectstorage"
    store: Store
    credentials: dict[str, str]  # access key id -> secret

    def log_message(self, format: str, *args) -> None:  # the request line only, never a header
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        parts = unquote(raw_path).lstrip("/").split("/", 1)
        bucket, key = parts[0], parts[1] if len(parts) > 1 else ""
        resource = unquote(raw_path)
        try:
            body = self._body(resource)
            self._authenticate(raw_path, raw_query, body, resource)
            query = {unquote(name): unquote(value) for name, _, value in
                     (part.partition("=") for part in raw_query.split("&") if part)}
            self._dispatch(bucket, key, query, body, resource)
        except S3Error as error:
            self._error(error, resource)

    def _body(self, resource: str) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise S3Error("MissingContentLength", resource)
        length = self.headers.get("Content-Length")
        if length is None:
            if self.command == "PUT":
                self.close_connection = True
                raise S3Error("MissingContentLength", resource)
            return b""
        return self.rfile.read(int(length))

    def _authenticate(self, raw_path: str, raw_query: str, body: bytes, resource: str) -> None:
        header = self.headers.get("Authorization")
        if not header:
            raise S3Error("AccessDenied", resource)
        match = _AUTHORIZATION_RE.fullmatch(header.strip())
        if not match:
            raise S3Error("AuthorizationHeaderMalformed", resource)
        secret = self.credentials.get(match["key"])
        if secret is None:
            raise S3Error("InvalidAccessKeyId", resource, AWSAccessKeyId=match["key"])
        if match["region"] != REGION:
            raise S3Error("AuthorizationHeaderMalformed", resource, f"The authorization header is malformed; the "
                          f"region '{match['region']}' is wrong; expecting '{REGION}'", Region=REGION)
        signed = match["headers"].split(";")
        amz_date = self.headers.get("x-amz-date", "")
        payload_hash = self.headers.get("x-amz-content-sha256", "")
        if "host" not in signed or "x-amz-date" not in signed or signed != sorted(signed):
            raise S3Error("AuthorizationHeaderMalformed", resource, "The authorization header must sign host and "
                          "x-amz-date, in sorted order")
        if any(name.lower().startswith("x-amz-") and name.lower() not in signed for name in self.headers):
            raise S3Error("AccessDenied", resource, "There were headers present in the request which were not "
                          "signed")
        try:
            moment = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            raise S3Error("AccessDenied", resource, "AWS authentication requires a valid Date or x-amz-date "
                          "header") from None
        if abs(time.time() - moment.timestamp()) > MAX_SKEW_SECONDS:
            raise S3Error("RequestTimeTooSkewed", resource)
        if match["date"] != amz_date[:8]:
            raise S3Error("AuthorizationHeaderMalformed", resource, "The credential's date does not match "
                          "x-amz-date")
        if not payload_hash:
            raise S3Error("InvalidRequest", resource, "Missing required header for this request: "
                          "x-amz-content-sha256")
        if payload_hash.startswith("STREAMING-"):
            raise S3Error("NotImplemented", resource)  # minio-go streams only over plain http (api.go)
        if payload_hash != UNSIGNED_PAYLOAD and not re.fullmatch(r"[0-9a-f]{64}", payload_hash):
            raise S3Error("InvalidArgument", resource, "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a SHA256 "
                          "hex digest")
        headers = {name.lower(): ",".join(self.headers.get_all(name)) for name in set(self.headers.keys())}
        wanted = signature(secret, self.command, raw_path, raw_query, headers, signed, payload_hash, amz_date,
                           REGION)
        if not hmac.compare_digest(wanted, match["signature"]):
            raise S3Error("SignatureDoesNotMatch", resource, AWSAccessKeyId=match["key"])
        if payload_hash != UNSIGNED_PAYLOAD and hashlib.sha256(body).hexdigest() != payload_hash:
            raise S3Error("XAmzContentSHA256Mismatch", resource)
        md5 = self.headers.get("Content-MD5")
        if md5 is not None:
            try:
                given = base64.b64decode(md5, validate=True)
            except ValueError:
                raise S3Error("InvalidDigest", resource) from None
            if len(given) != 16:
                raise S3Error("InvalidDigest", resource)
            if given != hashlib.md5(body).digest():
                raise S3Error("BadDigest", resource)

    def _dispatch(self, bucket: str, key: str, query: dict[str, str], body: bytes, resource: str) -> None:
        method, store = self.command, self.store
        if not bucket:
            raise S3Error("NotImplemented", resource)  # ListBuckets: restic never lists buckets
        if not key:
            if method == "GET" and "location" in query:
                store.bucket(bucket)
                return self._xml(f'<LocationConstraint xmlns="{S3_NS}">{REGION}</LocationConstraint>')
            if method == "HEAD" and not query:
                store.bucket(bucket)
                return self._send(200, {"x-amz-bucket-region": REGION})
            if method == "PUT" and not query:
                self._check_location(body, resource)
                store.create_bucket(bucket)
                return self._send(200, {"Location": f"/{bucket}"})
            if method == "GET" and query.get("list-type") == "2":
                return self._list(bucket, query)
            raise S3Error("NotImplemented", resource)
        if query:
            raise S3Error("NotImplemented", resource)  # versions, ACLs, tags, multipart uploads: not used by restic
        if method == "PUT":
            if "x-amz-copy-source" in self.headers:
                raise S3Error("NotImplemented", resource)
            etag = store.put(bucket, key, body)
            return self._send(200, {"ETag": f'"{etag}"'})
        if method == "DELETE":
            store.delete(bucket, key)  # S3 answers 204 for a key that is not there, too
            return self._send(204)
        if method in ("GET", "HEAD"):
            return self._get(bucket, key, resource)
        raise S3Error("NotImplemented", resource)

    def _check_location(self, body: bytes, resource: str) -> None:
        """CreateBucket's body: none, or a CreateBucketConfiguration naming this endpoint's region."""
        if not body:
            return
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            raise S3Error("InvalidArgument", resource, "The XML you provided was not well-formed") from None
        location = root.findtext(f"{{{S3_NS}}}LocationConstraint", root.findtext("LocationConstraint", ""))
        if location != REGION:
            raise S3Error("IllegalLocationConstraintException", resource)

    def _get(self, bucket: str, key: str, resource: str) -> None:
        path = self.store.object(bucket, key)
        data = path.read_bytes()
        size, status = len(data), 200
        headers = {"ETag": f'"{self.store.etag(path)}"', "Last-Modified": _http_date(path.stat().st_mtime),
                   "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        wanted = self.headers.get("Range")
        if wanted:
            match = _RANGE_RE.fullmatch(wanted.strip())
            if not match or match.groups() == ("", ""):
                raise S3Error("InvalidArgument", resource, "Invalid Range header")
            first, last = match.groups()
            if first == "":
                start, end = max(0, size - int(last)), size - 1
            else:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            if start >= size or start > end:
                raise S3Error("InvalidRange", resource, ActualObjectSize=str(size))
            data, status = data[start:end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send(status, headers, data)

    def _list(self, bucket: str, query: dict[str, str]) -> None:
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        try:
            max_keys = min(int(query.get("max-keys", MAX_KEYS)), MAX_KEYS)
        except ValueError:
            raise S3Error("InvalidArgument", f"/{bucket}", "max-keys must be an integer") from None
        after = query.get("start-after", "")
        token = query.get("continuation-token")
        if token is not None:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except ValueError:
                raise S3Error("InvalidArgument", f"/{bucket}", "The continuation token provided is incorrect"
                              ) from None
        encode = query.get("encoding-type") == "url"
        contents, prefixes, last, truncated = [], [], "", False
        for name, path in self.store.keys(bucket):
            if not name.startswith(prefix) or name <= after:
                continue
            rest = name[len(prefix):]
            common = prefix + rest[:rest.index(delimiter) + len(delimiter)] if delimiter and delimiter in rest else ""
            if common and (common in prefixes or common <= after):
                continue
            if len(contents) + len(prefixes) == max_keys:
                truncated = True
                break
            if common:
                prefixes.append(common)
            else:
                contents.append((name, path))
            last = common or name

        def shown(text: str) -> str:
            return escape(quote(text, safe="/") if encode else text)

        items = "".join(f"<Contents><Key>{shown(name)}</Key><LastModified>{_iso(path.stat().st_mtime)}</LastModified>"
                        f'<ETag>"{self.store.etag(path)}"</ETag><Size>{path.stat().st_size}</Size>'
                        "<StorageClass>STANDARD</StorageClass></Contents>" for name, path in contents)
        items += "".join(f"<CommonPrefixes><Prefix>{shown(common)}</Prefix></CommonPrefixes>" for common in prefixes)
        extra = f"<EncodingType>url</EncodingType>" if encode else ""
        if token is not None:
            extra += f"<ContinuationToken>{escape(token)}</ContinuationToken>"
        if truncated:  # the token is the last key (or common prefix) answered, opaque to the client
            token_out = base64.urlsafe_b64encode(last.encode()).decode()
            extra += f"<NextContinuationToken>{token_out}</NextContinuationToken>"
        self._xml(f'<ListBucketResult xmlns="{S3_NS}"><Name>{escape(bucket)}</Name><Prefix>{shown(prefix)}</Prefix>'
                  f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>"
                  f"<Delimiter>{shown(delimiter)}</Delimiter><IsTruncated>{str(truncated).lower()}</IsTruncated>"
                  f"{extra}{items}</ListBucketResult>")

    def _xml(self, document: str) -> None:
        self._send(200, {"Content-Type": "application/xml"},
                   f'<?xml version="1.0" encoding="UTF-8"?>\n{document}'.encode())

    def _error(self, error: S3Error, resource: str) -> None:
        request_id = uuid.uuid4().hex[:16].upper()
        extra = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in error.extra.items())
        document = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{error.code}</Code><Message>'
                    f"{escape(error.message)}</Message>{extra}<Resource>{escape(error.resource or resource)}"
                    f"</Resource><RequestId>{request_id}</RequestId></Error>").encode()
        self.log_message("error %s %s", error.code, resource)
        self._send(error.status, {"Content-Type": "application/xml", "x-amz-request-id": request_id}, document)

    def _send(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has the headers only (an error too: no XML body)
            self.wfile.write(body)


def make_server(host: str, port: int, cert: Path, key: Path, data: Path, keys: dict[str, str]) -> ThreadingHTTPServer:
    """The HTTPS server (port 0: any free one) for the access keys `keys` (id -> secret)."""
    handler = type("BoundHandler", (Handler,), {"store": Store(data), "credentials": dict(keys)})
    server = ThreadingHTTPServer((host, port), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


# -- the lab's side ---------------------------------------------------------------------------------------------------
def _dir(lab: Path) -> Path:
    return lab / "objectstorage"


def credentials(lab: Path) -> tuple[str, str]:
    """The one access key (id, secret), generated once and kept 0600 in the lab; the shape Hetzner's keys have
    (20 upper-case letters and digits, a 40-character secret)."""
    path = _dir(lab) / "credentials.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        alphabet = string.ascii_uppercase + string.digits
        path.write_text(json.dumps({"".join(secrets.choice(alphabet) for _ in range(20)):
                                    "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))}))
    [(key_id, secret)] = json.loads(path.read_text()).items()
    return key_id, secret


def data_dir(lab: Path) -> Path:
    return _dir(lab) / "data"


def start(lab: Path, bridge_ip: str, port: int = PORT) -> dict[str, str]:
    """Start the server; the lab's settings stay on the storage box (s3_settings() are the ones that switch)."""
    directory = _dir(lab)
    data_dir(lab).mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    credentials(lab)
    cert, key = ca.server_cert(lab, "objectstorage", [bridge_ip])
    env = {**os.environ, "PYTHONPATH": str(layout.REPO_ROOT)}
    procs.spawn([sys.executable, "-m", "tests.testbed.objectstorage", "serve", "--listen", f"{bridge_ip}:{port}",
                 "--cert", str(cert), "--key", str(key), "--data", str(data_dir(lab)),
                 "--credentials", str(directory / "credentials.json")],
                directory / "objectstorage.pid", directory / "objectstorage.log", env=env, cwd=layout.REPO_ROOT)
    procs.wait_for(lambda: procs.port_open(bridge_ip, port), 15, f"the object storage stand-in on {bridge_ip}:{port}")
    return {}


def s3_settings(lab: Path, bridge_ip: str, port: int = PORT) -> dict[str, str]:
    """The settings that point the backups at the stand-in instead of the storage box."""
    key_id, secret = credentials(lab)
    return {"BACKUP_REPOSITORY": f"s3:https://{bridge_ip}:{port}/{BUCKET}/{PREFIX}", "BACKUP_S3_ACCESS_KEY_ID": key_id,
            "BACKUP_S3_SECRET_ACCESS_KEY": secret, "BACKUP_CA_CERT": str(ca.ensure_ca(lab)[0])}


def stop(lab: Path) -> None:
    procs.stop(_dir(lab) / "objectstorage.pid")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed.objectstorage")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve")
    run.add_argument("--listen", required=True)
    for name in ("cert", "key", "data", "credentials"):
        run.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    make_server(host, int(port), args.cert, args.key, args.data, json.loads(args.credentials.read_text())
                ).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
