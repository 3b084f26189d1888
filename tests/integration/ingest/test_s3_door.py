"""The S3 door with the real clients: boto3 (default checksums, CRC32C, CRC64NVME), the AWS CLI and
rclone, over HTTPS (where botocore sends its checksums as aws-chunked trailers), into the same
pipeline: a ``.tar`` object is a job, a prefix with a ``metadata.txt`` is a job, a cart of the job
downloads the same bytes. Every refusal the issue names is here too.

Each stack is the module's own, on the embedded defaults and on PostgreSQL with the published
peers and archive interface.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import random
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import boto3
import pytest
import requests
from awscrt import checksums as crt
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import embedded_stack, own_stack
from tests.support.bundles import file_object, transaction_metadata, write_tar
from tests.support.cartd import cart_service
from tests.support.procs import BIN, Proc, free_port, wait_for

MIB = 1 << 20
PART = 8 * MIB


def _certificate(root: Path) -> tuple[Path, Path]:
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@dataclasses.dataclass
class Keys:
    token_id: int
    access: str
    secret: str


@dataclasses.dataclass
class Door:
    stack: object
    url: str
    cert: Path
    kind: str

    def keys(self, user: str) -> Keys:
        made = self.stack.cmd("token", "create", "--user", user, "--s3")
        assert made.returncode == 0, made.stderr
        lines = dict(line.split("=", 1) for line in made.stdout.split())
        token_id = int(made.stderr.split()[1])
        assert lines["AWS_ACCESS_KEY_ID"].startswith("PAC") and lines["AWS_SECRET_ACCESS_KEY"]
        return Keys(token_id, lines["AWS_ACCESS_KEY_ID"], lines["AWS_SECRET_ACCESS_KEY"])

    def client(self, keys: Keys, secret: str | None = None, **config):
        return boto3.client("s3", endpoint_url=self.url, verify=str(self.cert), region_name="us-east-1",
                            aws_access_key_id=keys.access, aws_secret_access_key=secret or keys.secret,
                            config=Config(retries={"max_attempts": 1}, **config))

    def state(self, job_id: int, keys: Keys) -> dict:
        answer = requests.get(f"{self.stack.url}/get_state", params={"job_id": job_id}, timeout=30,
                              headers={"Authorization": f"Bearer {keys.secret}"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def complete(self, job_id: int, keys: Keys, timeout: float = 180) -> dict:
        def done():
            state = self.state(job_id, keys)
            assert state["state"] != "FAILED", state
            return state if state["complete"] else None

        return wait_for(done, timeout, f"job {job_id} to complete")

    def env(self, keys: Keys) -> dict[str, str]:
        base = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
        return {**base, "AWS_ACCESS_KEY_ID": keys.access, "AWS_SECRET_ACCESS_KEY": keys.secret,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_CA_BUNDLE": str(self.cert)}


@pytest.fixture(scope="module", params=["embedded", "published"])
def door(request, tmp_path_factory, peers, archive):
    root = tmp_path_factory.mktemp(f"s3-{request.param}")
    cert, key = _certificate(root)
    port = free_port()
    sections = {"s3": {"port": str(port), "certificate": str(cert), "private_key": str(key)}}
    with own_stack(f"s3-{request.param}", request.param, root, peers, archive, broker="rabbitmq",
                   sections=sections) as stack:
        yield Door(stack, f"https://127.0.0.1:{port}", cert, request.param)


@pytest.fixture(scope="module")
def sam(door):
    return door.keys("sam")


def _bundle(path: Path, files: dict[str, bytes]) -> dict[str, str]:
    """A bundle of ``files`` ({'data/...': bytes}); return each file's SHA-1."""
    metadata = transaction_metadata()
    for arcname, data in files.items():
        subdir, _, name = arcname.rpartition("/")
        metadata.append(file_object(subdir, name, data))
    write_tar(str(path), list(files.items()), metadata)
    return {arcname.removeprefix("data/"): hashlib.sha1(data).hexdigest() for arcname, data in files.items()}


def _folder(path: Path, files: dict[str, bytes]) -> list[dict]:
    """``files`` ({'sub/name': bytes}) written under ``path`` with the metadata.txt that lists them."""
    metadata = transaction_metadata()
    for relative, data in files.items():
        target = path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        subdir, _, name = f"data/{relative}".rpartition("/")
        metadata.append(file_object(subdir, name, data))
    (path / "metadata.txt").write_text(json.dumps(metadata))
    return metadata


def _path(subdir: str, name: str) -> str:
    """A file's path below ``data/``."""
    return "/".join(part for part in [*subdir.split("/"), name] if part).removeprefix("data/")


def _recorded(door: Door, job_id: int) -> dict[str, str]:
    """The files the metadata service recorded for ``job_id``: path below ``data/`` → SHA-1."""
    return {_path(item["subdir"], item["name"]): item["hashsum"] for item in door.stack.files(job_id)}


def _composite(algorithm, data: bytes, part: int) -> str:
    digests = [algorithm(data[start:start + part]).to_bytes(4, "big") for start in range(0, len(data), part)]
    whole = algorithm(b"".join(digests)).to_bytes(4, "big")
    return f"{base64.b64encode(whole).decode()}-{len(digests)}"


def _multipart_etag(data: bytes, part: int) -> str:
    digests = [hashlib.md5(data[start:start + part]).digest() for start in range(0, len(data), part)]
    return f'"{hashlib.md5(b"".join(digests)).hexdigest()}-{len(digests)}"'


def test_boto3_sends_256_mib_in_8_mib_parts_and_a_cart_of_the_job_is_the_same_bytes(door, sam, tmp_path):
    big = os.urandom(256 * MIB)
    bundle = tmp_path / "run.tar"
    sums = _bundle(bundle, {"data/detector/frames.bin": big, "data/notes.txt": b"beamline 7\n"})
    data = bundle.read_bytes()
    s3 = door.client(sam)
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=4)
    s3.upload_file(str(bundle), "ingest", "boto/default.tar", Config=config)  # botocore's default: CRC32
    s3.upload_file(str(bundle), "ingest", "boto/crc32c.tar", Config=config, ExtraArgs={"ChecksumAlgorithm": "CRC32C"})
    s3.upload_file(str(bundle), "ingest", "boto/crc64.tar", Config=config,
                   ExtraArgs={"ChecksumAlgorithm": "CRC64NVME"})

    default = s3.head_object(Bucket="ingest", Key="boto/default.tar", ChecksumMode="ENABLED")
    assert default["ChecksumCRC32"] == _composite(lambda b: crt.crc32(b), data, PART)
    crc32c = s3.head_object(Bucket="ingest", Key="boto/crc32c.tar", ChecksumMode="ENABLED")
    assert crc32c["ChecksumCRC32C"] == _composite(lambda b: crt.crc32c(b), data, PART)
    assert crc32c["ChecksumType"] == "COMPOSITE" and crc32c["ContentLength"] == len(data)
    assert crc32c["ETag"] == _multipart_etag(data, PART)
    crc64 = s3.head_object(Bucket="ingest", Key="boto/crc64.tar", ChecksumMode="ENABLED")
    assert crc64["ChecksumCRC64NVME"] == base64.b64encode(crt.crc64nvme(data).to_bytes(8, "big")).decode()
    assert crc64["ChecksumType"] == "FULL_OBJECT"

    jobs = [int(head["Metadata"]["pacifica-job-id"]) for head in (default, crc32c, crc64)]
    assert len(set(jobs)) == 3
    for job_id in jobs:
        assert door.complete(job_id, sam)["files_total"] == 2
        assert _recorded(door, job_id) == sums

    files = {item["name"]: item for item in door.stack.files(jobs[1])}
    frames = files["frames.bin"]
    archive_url = door.stack.archive.url if door.stack.archive is not None else \
        f"file://{door.stack.data_dir / 'archive'}"
    (tmp_path / "cartd").mkdir()
    with cart_service(tmp_path / "cartd", archive_url, f"pacifica_cartd_s3_{door.kind}") as cartd:
        uid = f"s3-{time.time_ns()}"
        created = requests.post(f"{cartd.url}/{uid}", timeout=30, json={"fileids": [
            {"id": str(frames["_id"]), "path": "frames.bin", "hashtype": "sha1", "hashsum": frames["hashsum"]}]})
        assert created.status_code == 201, created.text
        assert cartd.wait_status(uid, {"ready", "error"}).headers["X-Pacifica-Status"] == "ready"
        with requests.get(f"{cartd.url}/{uid}", stream=True, timeout=60) as cart:
            cart.raise_for_status()
            with tarfile.open(fileobj=cart.raw, mode="r|") as tar:
                member = next(item for item in tar if item.isfile() and item.name.endswith("frames.bin"))
                digest = hashlib.sha1(tar.extractfile(member).read()).hexdigest()
    assert digest == hashlib.sha1(big).hexdigest()


def test_the_aws_cli_copies_a_bundle_and_syncs_a_folder_that_its_metadata_txt_makes_a_job(door, sam, tmp_path):
    aws = [str(BIN / "aws"), "--endpoint-url", door.url, "s3"]
    bundle = tmp_path / "cli.tar"
    sums = _bundle(bundle, {"data/a.txt": b"a" * 1000, "data/b/c.bin": os.urandom(3 * MIB)})
    copied = subprocess.run([*aws, "cp", str(bundle), "s3://ingest/cli/cli.tar"], env=door.env(sam),
                            capture_output=True, text=True, timeout=120)
    assert copied.returncode == 0, copied.stderr
    job = int(door.client(sam).head_object(Bucket="ingest", Key="cli/cli.tar")["Metadata"]["pacifica-job-id"])
    door.complete(job, sam)
    assert _recorded(door, job) == sums

    folder = tmp_path / "run42"
    metadata = _folder(folder, {"scan/1.dat": os.urandom(2 * MIB), "scan/2.dat": b"two", "empty.dat": b"",
                                "with space.txt": b"a name with a space"})
    synced = subprocess.run([*aws, "sync", str(folder), "s3://ingest/run42/", "--exclude", "metadata.txt"],
                            env=door.env(sam), capture_output=True, text=True, timeout=120)
    assert synced.returncode == 0, synced.stderr
    listed = door.client(sam).list_objects_v2(Bucket="ingest", Prefix="run42/", Delimiter="/")
    assert [item["Prefix"] for item in listed["CommonPrefixes"]] == ["run42/scan/"]
    assert sorted(item["Key"] for item in listed["Contents"]) == ["run42/empty.dat", "run42/with space.txt"]
    last = subprocess.run([*aws, "cp", str(folder / "metadata.txt"), "s3://ingest/run42/metadata.txt"],
                          env=door.env(sam), capture_output=True, text=True, timeout=120)
    assert last.returncode == 0, last.stderr
    head = door.client(sam).head_object(Bucket="ingest", Key="run42/metadata.txt")
    job = int(head["Metadata"]["pacifica-job-id"])
    assert door.complete(job, sam)["files_total"] == 4
    assert _recorded(door, job) == {_path(item["subdir"], item["name"]): item["hashsum"]
                                    for item in metadata if item.get("destinationTable") == "Files"}
    # The objects are read back from the archive now.
    back = tmp_path / "back"
    fetched = subprocess.run([*aws, "cp", "--recursive", "s3://ingest/run42/", str(back)], env=door.env(sam),
                             capture_output=True, text=True, timeout=120)
    assert fetched.returncode == 0, fetched.stderr
    for relative in ("scan/1.dat", "scan/2.dat", "empty.dat", "with space.txt"):
        assert (back / relative).read_bytes() == (folder / relative).read_bytes()


def test_rclone_copies_a_folder_and_checks_it_by_download(door, sam, tmp_path):
    folder = tmp_path / "rc"
    _folder(folder, {f"frame-{index:03d}.raw": os.urandom(random.Random(index).randint(0, 200_000))
                     for index in range(20)} | {"big/stack.raw": os.urandom(12 * MIB)})
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "RCLONE_"))}
    env.update({"RCLONE_CONFIG_PAC_TYPE": "s3", "RCLONE_CONFIG_PAC_PROVIDER": "Other",
                "RCLONE_CONFIG_PAC_ENDPOINT": door.url, "RCLONE_CONFIG_PAC_ACCESS_KEY_ID": sam.access,
                "RCLONE_CONFIG_PAC_SECRET_ACCESS_KEY": sam.secret})
    rclone = [shutil.which("rclone") or "rclone", "--ca-cert", str(door.cert), "--s3-provider", "Other"]
    copied = subprocess.run([*rclone, "copy", str(folder), "pac:ingest/rc", "--exclude", "metadata.txt"], env=env,
                            capture_output=True, text=True, timeout=180)
    assert copied.returncode == 0, copied.stderr
    last = subprocess.run([*rclone, "copyto", str(folder / "metadata.txt"), "pac:ingest/rc/metadata.txt"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert last.returncode == 0, last.stderr
    job = int(door.client(sam).head_object(Bucket="ingest", Key="rc/metadata.txt")["Metadata"]["pacifica-job-id"])
    assert door.complete(job, sam)["files_total"] == 21
    checked = subprocess.run([*rclone, "check", "--download", str(folder), "pac:ingest/rc"], env=env,
                             capture_output=True, text=True, timeout=180)
    assert checked.returncode == 0, checked.stderr
    assert "0 differences found" in checked.stderr and "22 matching files" in checked.stderr


def _code(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as refused:
        call()
    return refused.value.response["Error"]["Code"], refused.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_a_part_with_a_wrong_checksum_is_bad_digest_and_is_not_stored(door, sam):
    s3 = door.client(sam)
    upload = s3.create_multipart_upload(Bucket="ingest", Key="neg/bad.tar", ChecksumAlgorithm="CRC32C")["UploadId"]
    part = os.urandom(5 * MIB)
    wrong = base64.b64encode(crt.crc32c(part + b"x").to_bytes(4, "big")).decode()
    assert _code(lambda: s3.upload_part(Bucket="ingest", Key="neg/bad.tar", UploadId=upload, PartNumber=1,
                                        Body=part, ChecksumCRC32C=wrong)) == ("BadDigest", 400)
    assert "Parts" not in s3.list_parts(Bucket="ingest", Key="neg/bad.tar", UploadId=upload)
    assert sorted(os.listdir(door.stack.volume / "s3" / "uploads" / upload)) == ["upload.json"]
    right = base64.b64encode(crt.crc32c(part).to_bytes(4, "big")).decode()
    s3.upload_part(Bucket="ingest", Key="neg/bad.tar", UploadId=upload, PartNumber=1, Body=part,
                   ChecksumCRC32C=right)
    assert [item["PartNumber"] for item in s3.list_parts(Bucket="ingest", Key="neg/bad.tar",
                                                         UploadId=upload)["Parts"]] == [1]
    # A wrong Content-MD5 on a plain object: nothing is kept either.
    assert _code(lambda: s3.put_object(Bucket="ingest", Key="neg/md5.bin", Body=b"abc",
                                       ContentMD5=base64.b64encode(hashlib.md5(b"abd").digest()).decode())) \
        == ("BadDigest", 400)
    assert _code(lambda: s3.head_object(Bucket="ingest", Key="neg/md5.bin")) == ("404", 404)


def test_if_none_match_refuses_a_key_that_exists(door, sam):
    s3 = door.client(sam)
    s3.put_object(Bucket="ingest", Key="neg/once.bin", Body=b"first", IfNoneMatch="*")
    assert _code(lambda: s3.put_object(Bucket="ingest", Key="neg/once.bin", Body=b"second",
                                       IfNoneMatch="*")) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket="ingest", Key="neg/once.bin")["Body"].read() == b"first"


def test_abort_frees_the_space_at_once_and_no_upload_is_listed(door, sam):
    s3 = door.client(sam)
    upload = s3.create_multipart_upload(Bucket="ingest", Key="neg/abort.tar")["UploadId"]
    for number in (1, 2):
        s3.upload_part(Bucket="ingest", Key="neg/abort.tar", UploadId=upload, PartNumber=number,
                       Body=os.urandom(5 * MIB))
    folder = door.stack.volume / "s3" / "uploads" / upload
    assert sum(path.stat().st_size for path in folder.iterdir()) > 10 * MIB
    assert upload in [item["UploadId"] for item in s3.list_multipart_uploads(Bucket="ingest").get("Uploads", [])]
    s3.abort_multipart_upload(Bucket="ingest", Key="neg/abort.tar", UploadId=upload)
    assert not folder.exists()
    assert upload not in [item["UploadId"] for item in s3.list_multipart_uploads(Bucket="ingest").get("Uploads", [])]
    assert _code(lambda: s3.list_parts(Bucket="ingest", Key="neg/abort.tar", UploadId=upload)) == ("NoSuchUpload", 404)


def test_a_revoked_key_and_a_wrong_secret_are_refused(door):
    rex = door.keys("rex")
    s3 = door.client(rex)
    s3.put_object(Bucket="ingest", Key="rex.txt", Body=b"mine")
    assert _code(lambda: door.client(rex, secret="pac_" + "x" * 43).list_objects_v2(Bucket="ingest")) == \
        ("SignatureDoesNotMatch", 403)
    revoked = door.stack.cmd("token", "revoke", str(rex.token_id))
    assert revoked.returncode == 0, revoked.stderr
    assert _code(lambda: s3.list_objects_v2(Bucket="ingest")) == ("InvalidAccessKeyId", 403)
    assert _code(lambda: s3.put_object(Bucket="ingest", Key="rex2.txt", Body=b"after")) == ("InvalidAccessKeyId", 403)
    unsigned = requests.get(f"{door.url}/ingest", verify=str(door.cert), timeout=30)
    assert unsigned.status_code == 403 and "<Code>AccessDenied</Code>" in unsigned.text


def test_another_users_upload_and_objects_are_not_there_for_them(door, sam):
    eve = door.keys("eve")
    theirs, mine = door.client(eve), door.client(sam)
    upload = mine.create_multipart_upload(Bucket="ingest", Key="private/run.tar")["UploadId"]
    mine.put_object(Bucket="ingest", Key="private/notes.txt", Body=b"sam's")
    assert _code(lambda: theirs.upload_part(Bucket="ingest", Key="private/run.tar", UploadId=upload, PartNumber=1,
                                            Body=b"x")) == ("NoSuchUpload", 404)
    assert _code(lambda: theirs.list_parts(Bucket="ingest", Key="private/run.tar", UploadId=upload)) == \
        ("NoSuchUpload", 404)
    assert _code(lambda: theirs.abort_multipart_upload(Bucket="ingest", Key="private/run.tar", UploadId=upload)) == \
        ("NoSuchUpload", 404)
    assert "Uploads" not in theirs.list_multipart_uploads(Bucket="ingest")
    assert theirs.list_objects_v2(Bucket="ingest", Prefix="private/")["KeyCount"] == 0
    assert _code(lambda: theirs.get_object(Bucket="ingest", Key="private/notes.txt")) == ("NoSuchKey", 404)
    mine.abort_multipart_upload(Bucket="ingest", Key="private/run.tar", UploadId=upload)


def test_a_presigned_put_is_accepted_until_it_expires(door, sam):
    version2 = door.client(sam).generate_presigned_url("put_object", Params={"Bucket": "ingest", "Key": "v2.bin"},
                                                       ExpiresIn=60)
    if "AWSAccessKeyId=" in version2:  # botocore's default for presigning in us-east-1
        refused = requests.put(version2, data=b"x", verify=str(door.cert), timeout=30)
        assert refused.status_code == 403 and "Signature Version 2" in refused.text
    s3 = door.client(sam, signature_version="s3v4")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": "ingest", "Key": "signed/put.bin"}, ExpiresIn=2)
    put = requests.put(url, data=b"by a presigned URL", verify=str(door.cert), timeout=30)
    assert put.status_code == 200, put.text
    assert s3.get_object(Bucket="ingest", Key="signed/put.bin")["Body"].read() == b"by a presigned URL"
    time.sleep(3)
    late = requests.put(url, data=b"too late", verify=str(door.cert), timeout=30)
    assert late.status_code == 403 and "expired" in late.text


def test_a_metadata_txt_that_cannot_be_ingested_is_refused_naming_why(door, sam):
    s3 = door.client(sam)
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket="ingest", Key="broken/metadata.txt", Body=b"[{\"destinationTable\": \"Files\"}]")
    error = refused.value.response["Error"]
    assert error["Code"] == "InvalidArgument" and "missing" in error["Message"]
    assert _code(lambda: s3.head_object(Bucket="ingest", Key="broken/metadata.txt")) == ("404", 404)


def test_a_prefix_whose_files_never_arrive_fails_its_job_naming_them_and_idle_uploads_go(tmp_path, peers, archive):
    port = free_port()
    cert, key = _certificate(tmp_path)
    sections = {"s3": {"port": str(port), "certificate": str(cert), "private_key": str(key)},
                "ingest": {"upload_expiry": "0.001"}}  # 3.6 seconds
    with own_stack("s3-expiry", "embedded", tmp_path / "stack", peers, archive, sections=sections) as stack:
        door = Door(stack, f"https://127.0.0.1:{port}", cert, "embedded")
        ida = door.keys("ida")
        s3 = door.client(ida)
        folder = tmp_path / "late"
        _folder(folder, {"never.dat": b"this one is never sent", "sent.dat": b"sent"})
        s3.upload_file(str(folder / "sent.dat"), "ingest", "late/sent.dat")
        s3.upload_file(str(folder / "metadata.txt"), "ingest", "late/metadata.txt")
        job = int(s3.head_object(Bucket="ingest", Key="late/metadata.txt")["Metadata"]["pacifica-job-id"])
        assert door.state(job, ida)["state"] == "OK" and not door.state(job, ida)["complete"]
        upload = s3.create_multipart_upload(Bucket="ingest", Key="late/idle.tar")["UploadId"]
        s3.upload_part(Bucket="ingest", Key="late/idle.tar", UploadId=upload, PartNumber=1, Body=b"x" * 1000)
        failed = wait_for(lambda: (state := door.state(job, ida))["state"] == "FAILED" and state, 30,
                          "the waiting prefix to expire")
        assert "did not all arrive" in failed["exception"]
        wait_for(lambda: not (stack.volume / "s3" / "uploads" / upload).exists(), 30, "the idle upload to go")
        assert "Uploads" not in s3.list_multipart_uploads(Bucket="ingest")


def _signed(door: Door, keys: Keys, method: str, path: str, body: bytes = b"", headers: dict | None = None,
            send: bytes | None = None) -> requests.Response:
    """A request signed by botocore's own SigV4 signer, sent as it is (for what no client sends)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=door.url + path, data=body, headers=dict(headers or {}))
    S3SigV4Auth(Credentials(keys.access, keys.secret), "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    return requests.request(method, prepared.url, data=body if send is None else send, headers=dict(prepared.headers),
                            verify=str(door.cert), timeout=30)


@pytest.mark.parametrize("method, path, body, headers, code, status", [
    ("PUT", "/ingest/k?partNumber=0&uploadId=" + "0" * 48, b"x", {}, "NoSuchUpload", 404),
    ("PUT", "/ingest/" + "k" * 1100, b"x", {}, "KeyTooLongError", 400),
    ("GET", "/other-bucket", b"", {}, "NoSuchBucket", 404),
    ("PUT", "/ingest/copy", b"", {"x-amz-copy-source": "/ingest/x"}, "NotImplemented", 501),
    ("PUT", "/ingest/cond", b"x", {"If-None-Match": "\"abc\""}, "NotImplemented", 501),
    ("POST", "/ingest/k?uploads", b"", {"x-amz-checksum-algorithm": "MD4"}, "InvalidRequest", 400),
    ("POST", "/ingest/k?uploads", b"", {"x-amz-checksum-algorithm": "CRC64NVME", "x-amz-checksum-type": "COMPOSITE"},
     "InvalidRequest", 400),
    ("PUT", "/ingest/framing", b"zz\r\nnot a chunk\r\n", {"Content-Encoding": "aws-chunked"}, "IncompleteBody", 400),
    ("GET", "/ingest?list-type=2&max-keys=-1", b"", {}, "InvalidArgument", 400),
    ("GET", "/ingest?list-type=2&continuation-token=%21%21", b"", {}, "InvalidArgument", 400),
    ("GET", "/ingest?versioning", b"", {}, "NotImplemented", 501),
    ("DELETE", "/ingest", b"", {}, "MethodNotAllowed", 405),
])
def test_hostile_requests_get_s3_errors_naming_the_problem_never_500(door, sam, method, path, body, headers, code,
                                                                     status):
    answer = _signed(door, sam, method, path, body, headers)
    assert answer.status_code == status, answer.text
    assert f"<Code>{code}</Code>" in answer.text and len(answer.content) < 2000


def test_a_completion_document_with_entities_or_a_wrong_part_is_refused(door, sam):
    s3 = door.client(sam)
    upload = s3.create_multipart_upload(Bucket="ingest", Key="xml/run.tar")["UploadId"]
    etag = s3.upload_part(Bucket="ingest", Key="xml/run.tar", UploadId=upload, PartNumber=1, Body=b"p" * 1000)["ETag"]
    second = s3.upload_part(Bucket="ingest", Key="xml/run.tar", UploadId=upload, PartNumber=2, Body=b"q")["ETag"]
    laughs = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
              b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&b;</ETag></Part>"
              b"</CompleteMultipartUpload>")
    answer = _signed(door, sam, "POST", f"/ingest/xml/run.tar?uploadId={upload}", laughs)
    assert answer.status_code == 400 and "<Code>MalformedXML</Code>" in answer.text
    assert _code(lambda: s3.complete_multipart_upload(
        Bucket="ingest", Key="xml/run.tar", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]})) == ("InvalidPart", 400)
    assert _code(lambda: s3.complete_multipart_upload(
        Bucket="ingest", Key="xml/run.tar", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": second}, {"PartNumber": 1, "ETag": etag}]})) == \
        ("InvalidPartOrder", 400)
    # A body changed on the way under a signed payload hash: nothing is kept. A range past the end.
    tampered = _signed(door, sam, "PUT", "/ingest/xml/hash.bin", b"the bytes", send=b"THE BYTES")
    assert tampered.status_code == 400 and "XAmzContentSHA256Mismatch" in tampered.text
    assert _code(lambda: s3.head_object(Bucket="ingest", Key="xml/hash.bin")) == ("404", 404)
    s3.put_object(Bucket="ingest", Key="xml/small.bin", Body=b"0123456789")
    assert s3.get_object(Bucket="ingest", Key="xml/small.bin", Range="bytes=2-4")["Body"].read() == b"234"
    assert _code(lambda: s3.get_object(Bucket="ingest", Key="xml/small.bin", Range="bytes=50-")) == \
        ("InvalidRange", 416)
    s3.abort_multipart_upload(Bucket="ingest", Key="xml/run.tar", UploadId=upload)


def test_under_uwsgi_the_door_is_a_second_uwsgi_over_the_same_volume(tmp_path):
    stack = embedded_stack("s3-uwsgi", tmp_path / "stack")
    port = free_port()
    door_proc = None
    try:
        stack.start_uwsgi("--processes", "2")
        door_proc = Proc("s3-uwsgi-door", [str(BIN / "uwsgi"), "--http-socket", f"127.0.0.1:{port}", "--master",
                                           "--processes", "2", "--module", "pacifica.ingest.wsgi:s3_application"],
                         tmp_path / "door.log", env=stack.env).start()
        door = Door(stack, f"http://127.0.0.1:{port}", tmp_path / "none.pem", "uwsgi")
        uma = door.keys("uma")
        s3 = boto3.client("s3", endpoint_url=door.url, region_name="us-east-1", aws_access_key_id=uma.access,
                          aws_secret_access_key=uma.secret)
        wait_for(lambda: s3.list_objects_v2(Bucket="ingest")["KeyCount"] == 0, 60, "the door under uWSGI")
        bundle = tmp_path / "u.tar"
        sums = _bundle(bundle, {"data/u.bin": os.urandom(20 * MIB), "data/v.txt": b"v"})
        # Over plain HTTP botocore signs each body's SHA-256 and sends its CRC32 as a header.
        s3.upload_file(str(bundle), "ingest", "uwsgi/u.tar",
                       Config=TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=4))
        job = int(s3.head_object(Bucket="ingest", Key="uwsgi/u.tar")["Metadata"]["pacifica-job-id"])
        door.complete(job, uma)
        assert _recorded(door, job) == sums
    finally:
        if door_proc is not None:
            door_proc.stop()
        stack.stop()


def test_a_bundle_over_its_users_quota_is_refused_before_a_job_exists(door, tmp_path):
    quota = door.stack.cmd("quota", "set", "--user", "quinn", "--bytes", "64KiB", "--json")
    assert quota.returncode == 0, quota.stderr
    quinn = door.keys("quinn")
    s3 = door.client(quinn)
    bundle = tmp_path / "big.tar"
    _bundle(bundle, {"data/big.bin": os.urandom(200_000)})
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket="ingest", Key="q/big.tar", Body=bundle.read_bytes())
    error = refused.value.response["Error"]
    assert error["Code"] == "QuotaExceeded" and "quota" in error["Message"]
    assert _code(lambda: s3.head_object(Bucket="ingest", Key="q/big.tar")) == ("404", 404)
    assert "quinn" not in door.stack.cmd("jobs", "--user", "quinn").stdout
    small = tmp_path / "small.tar"
    _bundle(small, {"data/small.txt": b"fits"})
    s3.put_object(Bucket="ingest", Key="q/small.tar", Body=small.read_bytes())
    job = int(s3.head_object(Bucket="ingest", Key="q/small.tar")["Metadata"]["pacifica-job-id"])
    door.complete(job, quinn)
