"""The Object Storage stand-in (tests/testbed/objectstorage.py) answers as S3 does, on loopback over HTTPS with the
lab's kind of CA: signed requests made here without any SDK, then Debian's restic (tests/testbed/host-packages)
against it for real. The lab's test with the guests' restic is tests/test_backup_s3_lab.py.

S3_FACTS are the facts the stand-in relies on, each with its source:
- AWS S3 API reference, "Error responses" (docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html): the XML
  <Error><Code/><Message/><Resource/><RequestId/></Error> body and each code's status.
- AWS S3 API reference, "Authenticating Requests: Using the Authorization Header (AWS Signature Version 4)" and
  "Signature Calculations for the Authorization Header: Transferring Payload in a Single Chunk"
  (docs.aws.amazon.com/AmazonS3/latest/API/sigv4-auth-using-authorization-header.html, sig-v4-header-based-auth.html):
  the header's form, the canonical request, x-amz-content-sha256 (a hex SHA256 or UNSIGNED-PAYLOAD) required, the
  signing key chain, and the GET Object example signature checked below.
- minio-go v7.0.88 (restic v0.18.0's go.mod; github:minio/minio-go): api.go newRequest (path-style unless the
  endpoint is AWS/Google/Aliyun: pkg/s3utils/utils.go IsVirtualHostSupported; over https the payload is
  UNSIGNED-PAYLOAD or a hex SHA256, streaming signatures only over plain http), bucket-cache.go (GetBucketLocation
  is signed for us-east-1 and takes the region of an AuthorizationHeaderMalformed answer), api-put-bucket.go
  (MakeBucket is signed for us-east-1 first and retried for the region an AuthorizationHeaderMalformed answer names,
  then with a CreateBucketConfiguration body), api-list.go listObjectsV2Query (list-type=2, encoding-type=url,
  prefix, delimiter (also empty), continuation-token, max-keys; a truncated answer must carry
  NextContinuationToken), api-error-response.go (a HEAD answer has no body: 404 is NoSuchBucket without a key,
  NoSuchKey with one), api-put-object-streaming.go putObjectDo (Content-MD5 when SendContentMd5, no CRC trailer).
- restic v0.18.0 (github:restic/restic): internal/backend/s3/s3.go (Save: SendContentMd5, PartSize 200 MiB; Create:
  BucketExists then MakeBucket; Stat: GetObject + Stat = HEAD; Load: a Range GET), cmd/restic/global.go (--cacert
  FILE, also $RESTIC_CACERT), internal/backend/s3/config.go (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
  AWS_DEFAULT_REGION).
- Hetzner (docs.hetzner.com/storage/object-storage/...): S3-compatible, keys made in the Cloud Console, the
  endpoints https://<location>.your-objectstorage.com (fsn1, nbg1, hel1), the location being the region.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, unquote
from xml.etree import ElementTree

import pytest

from tests.testbed import ca, objectstorage

S3_FACTS = {
    # ErrorResponses.html: code -> HTTP status
    "statuses": {"AccessDenied": 403, "AuthorizationHeaderMalformed": 400, "BadDigest": 400,
                 "BucketAlreadyOwnedByYou": 409, "InvalidAccessKeyId": 403, "InvalidDigest": 400,
                 "InvalidRange": 416, "MissingContentLength": 411, "NoSuchBucket": 404, "NoSuchKey": 404,
                 "NotImplemented": 501, "RequestTimeTooSkewed": 403, "SignatureDoesNotMatch": 403,
                 "XAmzContentSHA256Mismatch": 400},
    # sig-v4-header-based-auth.html, "Example: GET Object" (a range of the first 10 bytes of test.txt)
    "sigv4_example": {"secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "amz_date": "20130524T000000Z",
                      "region": "us-east-1", "host": "examplebucket.s3.amazonaws.com", "path": "/test.txt",
                      "range": "bytes=0-9",
                      "signature": "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"},
    "unsigned_payload": "UNSIGNED-PAYLOAD",
    "s3_namespace": "http://s3.amazonaws.com/doc/2006-03-01/",
    "hetzner_endpoint": "https://{location}.your-objectstorage.com",
    "hetzner_locations": ("fsn1", "nbg1", "hel1"),
    "path_style_for_other_endpoints": True,  # minio-go IsVirtualHostSupported: only AWS, Google, Aliyun
}
KEY_ID, SECRET = "AKIATESTBED000000001", "testbed-secret-0123456789abcdefghijklmnop"


def test_every_error_code_has_the_status_s3_gives_it():
    assert {code: status for code, (status, _) in objectstorage.ERRORS.items()
            if code in S3_FACTS["statuses"]} == S3_FACTS["statuses"]
    assert objectstorage.S3_NS == S3_FACTS["s3_namespace"]
    assert objectstorage.UNSIGNED_PAYLOAD == S3_FACTS["unsigned_payload"]
    assert objectstorage.REGION in S3_FACTS["hetzner_locations"]


def test_the_signature_is_the_one_of_awss_own_example():
    example = S3_FACTS["sigv4_example"]
    headers = {"host": example["host"], "range": example["range"], "x-amz-content-sha256": objectstorage.EMPTY_SHA256,
               "x-amz-date": example["amz_date"]}
    assert objectstorage.signature(example["secret"], "GET", example["path"], "", headers, sorted(headers),
                                   objectstorage.EMPTY_SHA256, example["amz_date"], example["region"]
                                   ) == example["signature"]


def test_the_canonical_query_sorts_and_encodes_as_sigv4_says():
    assert objectstorage.canonical_query("prefix=a%2Fb&list-type=2&delimiter=&encoding-type=url") == \
        "delimiter=&encoding-type=url&list-type=2&prefix=a%2Fb"
    assert objectstorage.canonical_query("location") == "location="
    assert objectstorage.canonical_query("prefix=a b~") == "prefix=a%20b~"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """The stand-in on 127.0.0.1 (any free port) with a certificate from a throwaway CA like the lab's."""
    lab = tmp_path_factory.mktemp("objectstorage")
    cert, key = ca.server_cert(lab, "objectstorage", ["127.0.0.1"])
    data = lab / "data"
    data.mkdir()
    server = objectstorage.make_server("127.0.0.1", 0, cert, key, data, {KEY_ID: SECRET})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    context = ssl.create_default_context(cafile=str(ca.ensure_ca(lab)[0]))
    yield {"port": server.server_address[1], "context": context, "ca": ca.ensure_ca(lab)[0], "data": data}
    server.shutdown()
    server.server_close()


def request(endpoint, method: str, path: str, query: str = "", body: bytes = b"", key_id: str = KEY_ID,
            secret: str = SECRET, region: str = objectstorage.REGION, when: datetime | None = None,
            headers: dict[str, str] | None = None, after_signing: dict[str, str] | None = None):
    """A SigV4-signed request as minio-go makes it; returns (status, headers, body)."""
    host = f"127.0.0.1:{endpoint['port']}"
    signed = objectstorage.sign(method, host, path, query, body, key_id, secret, region, when, headers)
    signed.update(after_signing or {})
    connection = http.client.HTTPSConnection("127.0.0.1", endpoint["port"], context=endpoint["context"], timeout=10)
    try:
        connection.request(method, f"{path}?{query}" if query else path, body=body or None,
                           headers={name: value for name, value in signed.items() if name != "host"})
        response = connection.getresponse()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()
    finally:
        connection.close()


def error_code(body: bytes) -> str:
    return ElementTree.fromstring(body).findtext("Code")


@pytest.fixture(scope="module")
def bucket(endpoint):
    status, _, body = request(endpoint, "PUT", "/standin-bucket")
    assert status == 200, body
    return "standin-bucket"


def test_a_missing_bucket_is_nosuchbucket_and_a_missing_key_nosuchkey(endpoint, bucket):
    status, _, body = request(endpoint, "GET", "/no-such-bucket", "location")
    assert (status, error_code(body)) == (404, "NoSuchBucket")
    assert request(endpoint, "HEAD", "/no-such-bucket")[::2] == (404, b"")  # HEAD: the status only
    status, _, body = request(endpoint, "PUT", "/no-such-bucket/key", body=b"x")
    assert (status, error_code(body)) == (404, "NoSuchBucket")
    status, _, body = request(endpoint, "GET", f"/{bucket}/missing")
    assert (status, error_code(body)) == (404, "NoSuchKey")
    assert ElementTree.fromstring(body).findtext("Resource") == f"/{bucket}/missing"
    assert request(endpoint, "HEAD", f"/{bucket}/missing")[::2] == (404, b"")
    assert request(endpoint, "DELETE", f"/{bucket}/missing")[0] == 204  # S3 deletes a missing key without error


def test_a_wrong_access_key_or_signature_is_refused(endpoint, bucket):
    assert request(endpoint, "PUT", f"/{bucket}/ok", body=b"data")[0] == 200
    status, _, body = request(endpoint, "GET", f"/{bucket}/ok", key_id="AKIANOSUCHKEY0000000")
    assert (status, error_code(body)) == (403, "InvalidAccessKeyId")
    status, _, body = request(endpoint, "GET", f"/{bucket}/ok", secret=SECRET[:-1] + "X")
    assert (status, error_code(body)) == (403, "SignatureDoesNotMatch")
    status, _, body = request(endpoint, "GET", f"/{bucket}/ok", headers={"range": "bytes=0-1"},
                              after_signing={"range": "bytes=0-3"})  # a signed header changed on the way
    assert (status, error_code(body)) == (403, "SignatureDoesNotMatch")
    status, _, body = request(endpoint, "GET", f"/{bucket}/ok", after_signing={"x-amz-meta-extra": "1"})
    assert (status, error_code(body)) == (403, "AccessDenied")  # an x-amz- header that is not signed
    status, _, body = request(endpoint, "GET", f"/{bucket}/ok", after_signing={"authorization": ""})
    assert (status, error_code(body)) == (403, "AccessDenied")
    assert request(endpoint, "HEAD", f"/{bucket}/ok", secret="wrong-secret-0000")[::2] == (403, b"")


def test_a_stale_date_a_wrong_region_or_a_tampered_body_is_refused(endpoint, bucket):
    status, _, body = request(endpoint, "GET", f"/{bucket}/ok", when=datetime.now(timezone.utc) - timedelta(hours=1))
    assert (status, error_code(body)) == (403, "RequestTimeTooSkewed")
    status, _, body = request(endpoint, "GET", f"/{bucket}", "location", region="us-east-1")
    assert (status, error_code(body)) == (400, "AuthorizationHeaderMalformed")
    assert ElementTree.fromstring(body).findtext("Region") == objectstorage.REGION  # minio-go retries with it
    status, _, body = request(endpoint, "PUT", f"/{bucket}/tampered", body=b"signed body",
                              after_signing={"x-amz-content-sha256": hashlib.sha256(b"other body").hexdigest()})
    assert (status, error_code(body)) == (403, "SignatureDoesNotMatch")
    signed_other = objectstorage.sign("PUT", f"127.0.0.1:{endpoint['port']}", f"/{bucket}/tampered", "",
                                      b"other body", KEY_ID, SECRET)
    connection = http.client.HTTPSConnection("127.0.0.1", endpoint["port"], context=endpoint["context"])
    connection.request("PUT", f"/{bucket}/tampered", body=b"signed body!",
                       headers={name: value for name, value in signed_other.items() if name != "host"})
    response = connection.getresponse()
    assert (response.status, error_code(response.read())) == (400, "XAmzContentSHA256Mismatch")
    connection.close()
    wrong_md5 = base64.b64encode(hashlib.md5(b"else").digest()).decode()
    status, _, body = request(endpoint, "PUT", f"/{bucket}/md5", body=b"data", headers={"content-md5": wrong_md5})
    assert (status, error_code(body)) == (400, "BadDigest")
    assert request(endpoint, "GET", f"/{bucket}/md5")[0] == 404, "a refused upload stores nothing"


def test_make_bucket_refuses_an_existing_one_and_another_region(endpoint, bucket):
    status, _, body = request(endpoint, "PUT", f"/{bucket}")
    assert (status, error_code(body)) == (409, "BucketAlreadyOwnedByYou")
    config = b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>' \
             b'hel1</LocationConstraint></CreateBucketConfiguration>'
    status, _, body = request(endpoint, "PUT", "/other-region", body=config)
    assert (status, error_code(body)) == (400, "IllegalLocationConstraintException")
    status, _, body = request(endpoint, "PUT", "/Bad_Name")
    assert (status, error_code(body)) == (400, "InvalidBucketName")
    status, _, body = request(endpoint, "GET", f"/{bucket}", "location")
    assert status == 200 and ElementTree.fromstring(body).text == objectstorage.REGION


def test_objects_round_trip_with_etag_ranges_and_head(endpoint, bucket):
    data = bytes(range(256)) * 40
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    status, headers, _ = request(endpoint, "PUT", f"/{bucket}/data/ab/abcdef", body=data,
                                 headers={"content-md5": md5, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    assert status == 200 and headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    status, headers, body = request(endpoint, "GET", f"/{bucket}/data/ab/abcdef")
    assert (status, body, headers["content-length"]) == (200, data, str(len(data)))
    status, headers, body = request(endpoint, "GET", f"/{bucket}/data/ab/abcdef", headers={"range": "bytes=10-19"})
    assert (status, body, headers["content-range"]) == (206, data[10:20], f"bytes 10-19/{len(data)}")
    status, headers, body = request(endpoint, "GET", f"/{bucket}/data/ab/abcdef", headers={"range": "bytes=-5"})
    assert (status, body) == (206, data[-5:])
    status, _, body = request(endpoint, "GET", f"/{bucket}/data/ab/abcdef", headers={"range": f"bytes={len(data)}-"})
    assert (status, error_code(body)) == (416, "InvalidRange")
    status, headers, body = request(endpoint, "HEAD", f"/{bucket}/data/ab/abcdef")
    assert (status, body, headers["content-length"]) == (200, b"", str(len(data)))
    assert request(endpoint, "DELETE", f"/{bucket}/data/ab/abcdef")[0] == 204
    assert request(endpoint, "HEAD", f"/{bucket}/data/ab/abcdef")[0] == 404


def _list(endpoint, bucket: str, **params: str) -> ElementTree.Element:
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in
                     {"list-type": "2", "encoding-type": "url", "delimiter": "", **params}.items())
    status, _, body = request(endpoint, "GET", f"/{bucket}", query)
    assert status == 200, body
    return ElementTree.fromstring(body)


def test_listing_pages_through_every_key_under_a_prefix(endpoint):
    assert request(endpoint, "PUT", "/list-bucket")[0] == 200
    keys = [f"repo/data/{index:02x}/pack {index}" for index in range(7)] + ["repo/config", "other/key"]
    for key in keys:
        assert request(endpoint, "PUT", "/list-bucket/" + quote(key), body=key.encode())[0] == 200
    ns = {"s3": objectstorage.S3_NS}
    seen, token, pages = [], None, 0
    while True:
        page = _list(endpoint, "list-bucket", prefix="repo/", **{"max-keys": "3"},
                     **({"continuation-token": token} if token else {}))
        pages += 1
        seen += [unquote(element.text) for element in page.findall("s3:Contents/s3:Key", ns)]
        if page.findtext("s3:IsTruncated", namespaces=ns) != "true":
            break
        token = page.findtext("s3:NextContinuationToken", namespaces=ns)
        assert token, "a truncated answer carries a continuation token (minio-go api-list.go)"
    assert seen == sorted(key for key in keys if key.startswith("repo/")) and pages == 3
    page = _list(endpoint, "list-bucket", prefix="repo/", delimiter="/")
    assert [element.text for element in page.findall("s3:CommonPrefixes/s3:Prefix", ns)] == ["repo/data/"]
    assert [element.text for element in page.findall("s3:Contents/s3:Key", ns)] == ["repo/config"]
    encoded = _list(endpoint, "list-bucket", prefix="repo/data/00")
    assert [element.text for element in encoded.findall("s3:Contents/s3:Key", ns)] == ["repo/data/00/pack%200"]


def _restic(endpoint, tmp_path: Path, *args: str, secret: str = SECRET, key_id: str = KEY_ID, host: str = "host-1"):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RESTIC_PASSWORD": "standin-repository-password",
           "RESTIC_REPOSITORY": f"s3:https://127.0.0.1:{endpoint['port']}/restic-bucket/backups/{host}",
           "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret, "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(["restic", "--cacert", str(endpoint["ca"]), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_debians_restic_backs_up_checks_and_restores_through_it(endpoint, tmp_path):
    """Host's restic (Debian's package, minio-go underneath): init makes the bucket (MakeBucket answered
    AuthorizationHeaderMalformed for us-east-1, then retried for fsn1), backup, snapshots, check --read-data (Range
    GETs of every pack), restore; the bucket then holds restic's layout under the prefix."""
    assert shutil.which("restic"), "restic is missing: ./dev test installs tests/testbed/host-packages"
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "sub/random.bin").write_bytes(os.urandom(3 * 2**20))
    (source / "text.txt").write_text("mindroom\n" * 10000)
    for args in (("init",), ("backup", "--host", "host-1", str(source)), ("check", "--read-data")):
        done = _restic(endpoint, tmp_path, *args)
        assert done.returncode == 0, done.stderr
    snapshots = json.loads(_restic(endpoint, tmp_path, "snapshots", "--json").stdout)
    assert [snapshot["hostname"] for snapshot in snapshots] == ["host-1"]
    done = _restic(endpoint, tmp_path, "restore", "latest", "--target", str(tmp_path / "restored"))
    assert done.returncode == 0, done.stderr
    restored = tmp_path / "restored" / str(source).lstrip("/")
    assert (restored / "sub/random.bin").read_bytes() == (source / "sub/random.bin").read_bytes()
    assert (restored / "text.txt").read_text() == (source / "text.txt").read_text()
    stored = [path.name for path in (endpoint["data"] / "restic-bucket").iterdir()]
    assert "backups%2Fhost-1%2Fconfig" in stored and any(name.startswith("backups%2Fhost-1%2Fdata%2F")
                                                         for name in stored)


def test_restic_with_a_wrong_secret_or_key_fails_with_s3s_reason(endpoint, tmp_path):
    """A wrong secret: GetBucketLocation (signed for us-east-1) gets the region, then restic's HEAD of the config is
    403 without a body, which minio-go reports as "Access Denied." (api-error-response.go); an unknown key id is
    refused before that, with S3's InvalidAccessKeyId message."""
    assert _restic(endpoint, tmp_path, "init", host="host-2").returncode == 0
    done = _restic(endpoint, tmp_path, "snapshots", secret="wrong-secret-0123456789", host="host-2")
    assert done.returncode == 1 and "Fatal: unable to open config file: Stat: Access Denied." in done.stderr
    done = _restic(endpoint, tmp_path, "snapshots", key_id="AKIANOSUCHKEY0000000", host="host-2")
    assert done.returncode == 1 and ("Fatal: unable to open config file: Stat: The AWS Access Key Id you provided "
                                     "does not exist in our records.") in done.stderr
