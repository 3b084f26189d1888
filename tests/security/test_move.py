"""``POST /move`` takes files from the server's own disk: off until an operator names its roots,
and each moved file's size and hash are checked before it is moved."""

from __future__ import annotations

import hashlib

from tests.support.bundles import move_document


def test_move_is_refused_until_move_roots_is_set(ingest, tmp_path):
    stack = ingest("nomove")
    victim = tmp_path / "precious.dat"
    victim.write_bytes(b"precious")
    refused = stack.move(move_document({"data/p.dat": str(victim)}))
    assert refused.status_code == 403 and "move_roots" in refused.json()["message"]
    assert victim.read_bytes() == b"precious"
    assert stack.state(1).status_code == 404, "a refused move created a job"


def test_a_moved_file_that_is_not_what_the_document_says_stays_where_it_is(ingest, tmp_path):
    roots = tmp_path / "instrument"
    roots.mkdir()
    stack = ingest("move", move_roots=str(roots))
    source = roots / "run1.dat"
    source.write_bytes(b"measured data\n" * 1000)
    wrong_size = move_document({"data/run1.dat": str(source)})
    files = [item for item in wrong_size if item.get("destinationTable") == "Files"]
    files[0]["size"] += 1
    wrong_hash = move_document({"data/run1.dat": str(source)})
    next(item for item in wrong_hash if item.get("destinationTable") == "Files")["hashsum"] = "0" * 40
    for document, says in ((wrong_size, "bytes, not"), (wrong_hash, "not " + "0" * 40)):
        job_id = stack.move(document).json()["job_id"]
        final = stack.wait_complete(job_id)
        assert (final["state"], final["task"]) == ("FAILED", "load metadata"), final
        assert says in final["exception"], final["exception"]
        assert source.read_bytes() == b"measured data\n" * 1000, "the source moved although it was refused"
    right = move_document({"data/run1.dat": str(source)})
    job_id = stack.move(right).json()["job_id"]
    assert stack.wait_complete(job_id)["state"] == "OK"
    archived = stack.files(job_id)
    assert hashlib.sha1(stack.archived(int(archived[0]["_id"])).read_bytes()).hexdigest() == \
        hashlib.sha1(b"measured data\n" * 1000).hexdigest()
