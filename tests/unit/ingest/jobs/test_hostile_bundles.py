"""Property: whatever a bundle claims, a job either archives every file exactly as sent, or fails
before 'ingest files' or rolls back, leaving nothing in the archive.

Hypothesis builds hostile bundles (paths with '..' or '/', links, FIFOs, duplicated members,
unlisted files, metadata that lies about names, sizes, hashes or hash types) and runs them
through the real stages: metadata loading with the embedded uniqueid on SQLite, then streaming
to a local archive with inline verification.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pacifica.ingest.common.errors import IngestError
from pacifica.ingest.db import migrations
from pacifica.ingest.jobs import pipeline
from pacifica.ingest.peers.local_archive import LocalArchive
from pacifica.ingest.peers.uniqueid import EmbeddedUniqueId
from pacifica.ingest.volume.spool import Spool
from tests.conftest import bound_database
from tests.support.archive import archive_listing

# Honest choices are drawn more often, so that bundles with one or two hostile traits are common.
GOOD_NAMES = ["data/a.txt", "data/sub/b.bin", "data//sub/c", "data/\u00fc/\u00f1.dat", "data/x/y/z.csv"]
BAD_NAMES = ["data/../escape", "/etc/abs", "other/d.txt", "data/a.txt"]
KINDS = ["file"] * 12 + ["symlink", "hardlink", "fifo"]
LIES = ["none"] * 12 + ["hash"] * 3 + ["size", "name", "hashtype", "drop", "extra"]

name = st.one_of(st.sampled_from(GOOD_NAMES), st.sampled_from(GOOD_NAMES), st.sampled_from(BAD_NAMES))
member = st.tuples(name, st.sampled_from(KINDS), st.binary(max_size=3000), st.sampled_from(LIES))
bundles = st.one_of(st.lists(member, max_size=4, unique_by=lambda m: m[0]), st.lists(member, max_size=4))


def describe(members):
    """The metadata.txt an uploader would write for ``members``, with each member's lie applied."""
    metadata = []
    for name, _kind, data, lie in members:
        if lie == "drop":
            continue
        subdir, _, base = name.rpartition("/")
        item = {"destinationTable": "Files", "name": base, "subdir": subdir, "size": len(data),
                "hashtype": "sha1", "hashsum": hashlib.sha1(data).hexdigest()}
        if lie == "size":
            item["size"] += 1
        elif lie == "hash":
            item["hashsum"] = hashlib.sha1(data + b"!").hexdigest()
        elif lie == "name":
            item["name"] = base + ".renamed"
        elif lie == "hashtype":
            item["hashtype"] = "sha7"
        elif lie == "extra":
            metadata.append(dict(item, name="ghost.txt"))
        metadata.append(item)
    return metadata


def write(path, members, metadata_first):
    raw = json.dumps(describe(members)).encode()

    def add_metadata(tar):
        info = tarfile.TarInfo("metadata.txt")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))

    with tarfile.open(path, "w") as tar:
        if metadata_first:
            add_metadata(tar)
        for name, kind, data, _lie in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
                info.linkname = "/etc/passwd" if kind != "fifo" else ""
                tar.addfile(info)
        if not metadata_first:
            add_metadata(tar)


def listing(directory):
    return archive_listing(directory)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=bundles, metadata_first=st.booleans())
def test_a_job_archives_exactly_or_leaves_nothing(tmp_path, members, metadata_first):
    with bound_database("sqlite", tmp_path) as db, tempfile.TemporaryDirectory(dir=tmp_path) as work:
        migrations.upgrade(db)
        path = os.path.join(work, "bundle.tar")
        write(path, members, metadata_first)
        spool = Spool(os.path.join(work, "volume"), 1024)
        archive = LocalArchive(os.path.join(work, "archive"))
        try:
            manifest = pipeline.load_bundle_metadata(1, path, spool, EmbeddedUniqueId())
        except IngestError:
            event("refused before 'ingest files'")
            assert not os.path.exists(archive.root), "a refused bundle wrote to the archive"
            return
        try:
            pipeline.ingest_files(1, path, manifest, archive, 1024)
        except IngestError as exc:
            event("rolled back in 'ingest files'")
            assert "deleted" in str(exc) or "nothing had been written" in str(exc)
            assert not listing(archive.root), "a failed job left files in the archive"
            return
        event("archived")
        with tarfile.open(path) as tar:
            regular = {pipeline.document.member_name(info.name): tar.extractfile(info).read()
                       for info in tar.getmembers()
                       if info.isfile() and pipeline.document.member_name(info.name).startswith("data/")}
        archived = {}
        for entry in manifest.files():
            with open(archive.path(entry.file_id), "rb") as handle:
                archived[entry.file_id] = handle.read()
        manifest.close()
        assert sorted(archived.values()) == sorted(regular.values()), "archived bytes differ from the bundle"
        assert listing(archive.root) == sorted(str(file_id) for file_id in archived)
