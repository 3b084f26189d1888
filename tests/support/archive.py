"""Looking into an embedded archive directory from the tests."""

from __future__ import annotations

import os

from pacifica.ingest.peers.local_archive import LocalArchive


def archive_listing(root, leftovers_allowed: bool = False) -> list[str]:
    """The names of the files kept in the archive directory ``root`` (its work folder aside).

    Unless ``leftovers_allowed`` (a writer was killed and nothing has swept since), the work folder
    must hold no partial file.
    """
    if not os.path.isdir(root):
        return []
    names = sorted(os.listdir(root))
    if LocalArchive.INCOMING in names:
        names.remove(LocalArchive.INCOMING)
        partial = os.listdir(os.path.join(root, LocalArchive.INCOMING))
        assert leftovers_allowed or not partial, f"partial files left in the archive: {partial}"
    return names
