"""The one rule set for letting a bundle in: size limit, room on the volume, partial uploads."""

from __future__ import annotations

import pytest

from pacifica.ingest.jobs import admission
from pacifica.ingest.volume.resumable import Upload
from pacifica.ingest.volume.spool import Spool


class RoomFor(Spool):
    """A volume that reports ``free`` bytes."""

    def __init__(self, free: int) -> None:
        super().__init__("/nonexistent", 4096)
        self.free = free

    def free_space(self) -> int:
        return self.free


def test_a_bundle_within_the_limit_that_fits_is_let_in():
    admission.bundle(100, 100, RoomFor(100))
    admission.bundle(10**12, 0, RoomFor(10**12))  # 0: no limit


@pytest.mark.parametrize(("length", "limit", "free", "status", "words"), [
    (101, 100, 10**6, 413, "the upload of 101 bytes is larger than the 100 byte limit"),
    (50, 100, 49, 507, "the volume has 49 bytes free, the upload needs 50"),
    (101, 100, 49, 413, "larger than"),  # the limit is told first
])
def test_a_bundle_is_refused_with_the_status_that_says_why(length, limit, free, status, words):
    with pytest.raises(admission.Refused) as refused:
        admission.bundle(length, limit, RoomFor(free))
    assert refused.value.status == status and words in str(refused.value)


def test_the_words_name_what_came():
    with pytest.raises(admission.Refused, match="the body of 5 bytes"):
        admission.within_limit(5, 4, "body")


def _part(length: int | None) -> Upload:
    return Upload(job_id="p" + "0" * 32, length=length, user="alice", metadata={}, created=0.0, concat="partial")


def test_partial_uploads_are_counted_and_added_up():
    admission.partial("alice", 10, [_part(40), _part(None)], max_partials=3, limit=50)
    with pytest.raises(admission.Refused) as too_many:
        admission.partial("alice", 1, [_part(1)] * 3, max_partials=3, limit=0)
    assert too_many.value.status == 429 and "3 partial uploads open" in str(too_many.value)
    with pytest.raises(admission.Refused) as too_large:
        admission.partial("alice", 11, [_part(40)], max_partials=3, limit=50)
    assert too_large.value.status == 413 and "would hold 51 bytes" in str(too_large.value)
    admission.partial("alice", None, [_part(40)], max_partials=3, limit=50)  # a deferred length: told later
