"""Cart bookkeeping on the volume: status, where a cart's files are, recording its files, making
it ready, removal and least-recently-used eviction. The worker and the web resources use
``CartStore``; the published ``utils.Cartutils`` is this plus the published checks.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
from collections.abc import Iterable
from typing import Any

import peewee

from ...core.redact import LISTED
from ..db.models import Cart, CartTasks, File
from . import progress
from .tarlayout import CartEntry, TarLayout

logger = logging.getLogger(__name__)

# File rows are inserted this many at a time: a request of a few hundred thousand files is never
# held whole, and a statement has fewer parameters than any database allows (999 on old SQLite).
ROW_BATCH = 100


def _now() -> datetime.datetime:
    return datetime.datetime.now()


def touch(cart: Cart) -> None:
    """The cart counts as used now (eviction takes the least recently used first)."""
    Cart.update(updated_date=_now()).where(Cart.id == cart.id).execute()


class CartStore:
    """Where a volume keeps its carts, and their status, files, removal and eviction."""

    def __init__(self, volume_path: str, lru_buffer_time: float, lru_purge: bool = True) -> None:
        self.volume_path = volume_path
        self.lru_buffer_time = lru_buffer_time
        self.lru_purge = lru_purge

    @staticmethod
    def current(uid: str, owner: str | None = None) -> Cart | None:
        """The newest cart of ``uid`` that was not deleted (of ``owner``, when given), or None."""
        query = Cart.select().where((Cart.cart_uid == str(uid)) & Cart.deleted_date.is_null(True))
        if owner is not None:
            query = query.where(Cart.owner == owner)
        try:
            return query.order_by(Cart.creation_date.desc(), Cart.id.desc()).get()
        except peewee.DoesNotExist:
            return None

    @classmethod
    def cart_status(cls, uid: str) -> list[str]:
        """Get the status of a specified cart: [status, message]."""
        cart = cls.current(uid)
        if cart is None:
            return ["error", f"No cart with uid {uid} found"]
        return [cart.status, cart.error]

    @classmethod
    def available_cart(cls, uid: str, owner: str | None = None) -> str | bool | None:
        """The path of a ready cart's files, False while it is not ready, None when there is no cart."""
        cart = cls.current(uid, owner)
        if cart is None:
            return None
        if cart.status != "ready":
            return False
        Cart.update(updated_date=_now()).where(Cart.id == cart.id).execute()  # used: not evicted first
        return cart.bundle_path

    @staticmethod
    def fix_absolute_path(filepath: str) -> str:
        """Remove / from front of path."""
        return filepath.lstrip("/")

    @classmethod
    def get_path_size(cls, source: str) -> int:
        """Return the size of a directory, including all subdirectories and files."""
        total = 0
        for root, _dirs, files in os.walk(source):
            for name in files:
                total += os.path.getsize(os.path.join(root, name))
        return total

    @staticmethod
    def create_bundle_directories(filepath: str) -> None:
        """Create all the directories in the given path if they do not already exist."""
        os.makedirs(filepath, exist_ok=True)

    def cart_directory(self, cart: Cart) -> str:
        """Everything of ``cart`` is kept in this directory (removed as a whole)."""
        return os.path.join(self.volume_path, str(cart.id))

    def file_root(self, cart: Cart) -> str:
        """The cart's files sit at their paths under this directory (as the published service)."""
        return os.path.join(self.cart_directory(cart), cart.cart_uid)

    def file_path(self, cart: Cart, cart_file: File) -> str:
        """Where the file ``cart_file`` of ``cart`` is staged."""
        if os.path.isabs(cart_file.bundle_path):  # a row written with an absolute path: taken as it is
            return cart_file.bundle_path
        return os.path.join(self.file_root(cart), self.fix_absolute_path(cart_file.bundle_path))

    def bundle_file(self, cart: Cart) -> str:
        """Where the tar of a cart made with ``bundle`` is kept."""
        return self.file_root(cart) + ".tar"

    def progress_path(self, cart: Cart) -> str:
        """Where the staging progress of ``cart`` is kept (see ``progress``)."""
        return os.path.join(self.volume_path, f"{cart.id}.progress")

    def layout(self, cart: Cart, name: str, files: Any = None) -> TarLayout:
        """The tar of ``cart``'s staged files (default: its rows in state 'staged'), each at its path
        in the cart, under the top directory ``name``."""
        if files is None:
            files = File.select().where((File.cart == cart.id) & (File.status == "staged"))
        entries = []
        for cart_file in files:
            source = self.file_path(cart, cart_file)
            path = os.path.relpath(source, self.file_root(cart) if source != cart_file.bundle_path
                                   else self.cart_directory(cart))
            entries.append(CartEntry(path.replace(os.sep, "/"), source, cart_file.hash_type or "",
                                     cart_file.hash_value or ""))
        return TarLayout(name, entries)

    def delete_cart_bundle(self, cart: Cart) -> None:
        """Remove a cart's files (its tar, its progress) and mark it deleted."""
        Cart.update(deleted_date=_now(), status="deleted").where(Cart.id == cart.id).execute()
        shutil.rmtree(self.cart_directory(cart), ignore_errors=True)
        progress.remove(self.progress_path(cart))

    @staticmethod
    def delete_cart_tasks(cart: Cart, revoke_func: Any) -> None:
        """Revoke and forget the cart's Celery tasks."""
        for task in CartTasks.select().where(CartTasks.cart_id == cart.id):
            if revoke_func is not None:
                revoke_func(task.celery_task_id, terminate=True)
            task.delete_instance()

    def remove_cart(self, uid: str, revoke_func: Any = None, owner: str | None = None) -> str | bool:
        """Call when a DELETE request comes in: remove the cart; False when there is none."""
        cart = self.current(uid, owner)
        if cart is None:
            return False
        self.delete_cart_tasks(cart, revoke_func)
        self.delete_cart_bundle(cart)
        return "Cart Deleted Successfully"

    def lru_cart_delete(self, mycart: Cart) -> bool:
        """Delete the least recently used ready cart that is not ``mycart`` and was not used within
        ``lru_buffer_time`` seconds; return whether one was deleted."""
        cutoff = _now() - datetime.timedelta(seconds=self.lru_buffer_time)
        query = (Cart.select().where((Cart.id != mycart.id) & Cart.deleted_date.is_null(True)
                                     & (Cart.status.in_(["ready", "error"])) & (Cart.updated_date <= cutoff))
                 .order_by(Cart.updated_date))
        victim = query.first()
        if victim is None:
            return False
        logger.info("cart %s (%s) evicted to make room for cart %s", victim.cart_uid, victim.id, mycart.cart_uid)
        self.delete_cart_bundle(victim)
        return True

    def make_room(self, mycart: Cart, size_needed: int) -> bool:
        """Make room for ``size_needed`` bytes, evicting least recently used carts (unless
        ``lru_purge`` is off); whether it fits."""
        while shutil.disk_usage(self.volume_path).free < size_needed:
            if not self.lru_purge or not self.lru_cart_delete(mycart):
                return False
        return True

    @staticmethod
    def set_file_status(cart_file: File, cart: Cart | None, status: str, error: Any = "") -> None:
        """Set the status and (when given) error of one file of a cart; the cart counts as used."""
        fields: dict[str, Any] = {"status": str(status)}
        if error:
            fields["error"] = str(error)
        elif status != "error":
            fields["error"] = ""
        File.update(**fields).where(File.id == cart_file.id).execute()
        if cart is not None:
            touch(cart)

    @classmethod
    def update_cart_files(cls, cart: Cart, file_ids: Iterable[dict[str, Any]]) -> Exception | None:
        """Record the files of a cart request (paths relative to the cart), a batch of rows at a time;
        the error, if one lacks a key."""
        batch: list[dict[str, Any]] = []
        try:
            with Cart.atomic():
                for item in file_ids:
                    batch.append({"cart": cart.id, "file_name": str(item["id"]),
                                  "bundle_path": str(item["path"]).lstrip("/"), "hash_type": item["hashtype"],
                                  "hash_value": item["hashsum"], "status": "waiting"})
                    if len(batch) >= ROW_BATCH:
                        File.insert_many(batch).execute()
                        batch.clear()
                if batch:
                    File.insert_many(batch).execute()
        except (KeyError, TypeError) as exc:
            return exc
        touch(cart)
        return None

    @staticmethod
    def repeated_paths(cart: Cart) -> list[str]:
        """The paths that more than one of the cart's files would take (at most ``LISTED``)."""
        query = (File.select(File.bundle_path).where(File.cart == cart.id).group_by(File.bundle_path)
                 .having(peewee.fn.COUNT(File.id) > 1).limit(LISTED))
        return [row.bundle_path for row in query]

    def tar_files(self, cartid: int) -> str:
        """Make the cart ready: with ``bundle``, write its tar and drop the staged copies. Return the path."""
        cart = Cart.get_by_id(cartid)
        path = self.file_root(cart)
        if cart.bundle:
            files = File.select().where(File.cart == cart.id)
            self.layout(cart, cart.cart_uid, files=files).write(self.bundle_file(cart))
            shutil.rmtree(path, ignore_errors=True)
            path = self.bundle_file(cart)
        Cart.update(status="ready", error="", bundle_path=path,
                    updated_date=datetime.datetime.now()).where(Cart.id == cart.id).execute()
        return path
