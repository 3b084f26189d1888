"""The published ``Cartutils`` helpers that check an archive status answer and prepare a file's
place, for code written against the published cartd. This service's worker does the same work
in ``staging`` and never calls these; they keep the documented names, arguments and return values.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
from typing import Any

from ..db.models import Cart, File
from ..volume.store import touch


def _file_error(cart_file: File, cart: Cart, message: str) -> None:
    File.update(status="error", error=message).where(File.id == cart_file.id).execute()
    cart_file.status, cart_file.error = "error", message
    touch(cart)


class PublishedChecks:
    """Mixed into ``Cartutils`` (with ``carts.CartStore``): ``check_*``, ``create_download_path``,
    ``prepare_bundle`` and ``create_symlink``."""

    volume_path: str

    @staticmethod
    def _status_field(response: str, field: str) -> Any:
        return json.loads(response)[field]

    @classmethod
    def check_file_size_needed(cls, response: str, cart_file: File, mycart: Cart) -> int:
        """The file's size from an archive status answer; -1 (and the file in error) if it has none."""
        try:
            return int(cls._status_field(response, "filesize"))
        except (ValueError, KeyError, TypeError) as exc:
            _file_error(cart_file, mycart, f"Failed to read the file size from the archive status: {exc}")
            return -1

    @classmethod
    def check_file_modified_time(cls, response: str, cart_file: File, mycart: Cart) -> int:
        """The file's modification time (whole seconds) from an archive status answer; -1 if none."""
        try:
            return math.floor(float(cls._status_field(response, "mtime")))
        except (ValueError, KeyError, TypeError) as exc:
            _file_error(cart_file, mycart, f"Failed to read the modified time from the archive status: {exc}")
            return -1

    def check_file_ready_pull(self, response: str, cart_file: File, mycart: Cart) -> Any:
        """False while the file is not on the archive's disk; else ``check_status_details``."""
        size_needed = self.check_file_size_needed(response, cart_file, mycart)
        mod_time = self.check_file_modified_time(response, cart_file, mycart)
        try:
            media = self._status_field(response, "file_storage_media")
        except (ValueError, KeyError, TypeError) as exc:
            _file_error(cart_file, mycart, f"Failed to read the storage media from the archive status: {exc}")
            return -1
        if media != "disk":
            return False
        return self.check_status_details(mycart, cart_file, size_needed, mod_time)

    def check_status_details(self, mycart: Cart, cart_file: File, size_needed: int, mod_time: int) -> Any:
        """``{'modtime', 'filepath', 'path_created', 'enough_space'}`` when the file can be pulled, else -1."""
        if size_needed < 0 or mod_time < 0:
            return -1
        path = self.file_path(mycart, cart_file)  # type: ignore[attr-defined]
        created = self.create_download_path(cart_file, mycart, path)
        enough = self.check_space_requirements(cart_file, mycart, size_needed, True)
        if created and enough:
            return {"modtime": mod_time, "filepath": path, "path_created": created, "enough_space": enough}
        return -1

    @classmethod
    def create_download_path(cls, cart_file: File, mycart: Cart, abs_cart_file_path: str) -> bool:
        """Make the directories the file will be pulled to; False (and the file in error) if that fails."""
        try:
            os.makedirs(os.path.dirname(abs_cart_file_path), exist_ok=True)
        except OSError as exc:
            _file_error(cart_file, mycart, f"Failed directory create with error: {exc}")
            return False
        return True

    def check_space_requirements(self, cart_file: File, mycart: Cart, size_needed: int, deleted_flag: bool) -> bool:
        """Whether ``size_needed`` bytes fit on the volume, evicting least recently used carts first;
        if not, the file and the cart are in error "No Space Available". (``deleted_flag`` is
        accepted for the published signature.)"""
        if self.make_room(mycart, size_needed):  # type: ignore[attr-defined]
            return True
        if cart_file is not None:
            _file_error(cart_file, mycart, "No Space Available")
        Cart.update(status="error", error="No Space Available").where(Cart.id == mycart.id).execute()
        return False

    def prepare_bundle(self, cartid: int) -> bool:
        """Whether every file of the cart is staged; a file in error puts the cart in error."""
        files = list(File.select().where(File.cart == cartid))
        failed = [cart_file for cart_file in files if cart_file.status == "error"]
        if failed:
            Cart.update(status="error", error=f"Failed to pull file({failed[0].error})",
                        updated_date=datetime.datetime.now()).where(Cart.id == cartid).execute()
            return False
        return all(cart_file.status == "staged" for cart_file in files)

    def create_symlink(self, cartid: int) -> str:
        """Link ``<volume>/cartuids/<uid>`` to the cart's files (or tar); return the link."""
        cart = Cart.get_by_id(cartid)
        target = self.bundle_file(cart) if cart.bundle else self.file_root(cart)  # type: ignore[attr-defined]
        links = os.path.join(self.volume_path, "cartuids")
        os.makedirs(links, exist_ok=True)
        link = os.path.join(links, cart.cart_uid)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(os.path.relpath(target, links), link)
        return link
