"""The published ``Cartutils`` helpers keep their documented arguments and answers."""

from __future__ import annotations

import io
import json
import os
import tarfile

from pacifica.cartd.orm import Cart, File, OrmSync
from pacifica.cartd.utils import Cartutils

STATUS = {"filesize": "5", "mtime": "1600000000.7", "file_storage_media": "disk"}


def _setup(tmp_path, bundle: bool = False) -> tuple[Cartutils, Cart]:
    OrmSync.update_tables()
    cart = Cart.create(cart_uid="pub", status="staging", bundle=bundle)
    return Cartutils(str(tmp_path), lru_buffer_time=0), cart


def test_status_checks_say_when_a_file_can_be_pulled_and_why_not(cart_database, tmp_path):
    utils, cart = _setup(tmp_path)
    assert utils.update_cart_files(cart, [{"id": "7", "path": "/a/b.txt", "hashtype": "md5", "hashsum": ""}]) is None
    cart_file = File.get(File.cart == cart.id)
    assert cart_file.bundle_path == "a/b.txt"
    assert utils.check_file_ready_pull(json.dumps({**STATUS, "file_storage_media": "tape"}), cart_file, cart) is False
    ready = utils.check_file_ready_pull(json.dumps(STATUS), cart_file, cart)
    assert ready["modtime"] == 1_600_000_000 and ready["enough_space"] and ready["path_created"]
    assert ready["filepath"] == os.path.join(str(tmp_path), str(cart.id), "pub", "a", "b.txt")
    assert os.path.isdir(os.path.dirname(ready["filepath"]))
    assert utils.check_file_ready_pull(json.dumps({"mtime": "x"}), cart_file, cart) == -1
    assert File.get_by_id(cart_file.id).status == "error"
    assert isinstance(utils.update_cart_files(cart, [{"id": "8"}]), KeyError)


def test_no_space_puts_the_file_and_the_cart_in_error(cart_database, tmp_path):
    utils, cart = _setup(tmp_path)
    utils.update_cart_files(cart, [{"id": "7", "path": "x", "hashtype": "md5", "hashsum": ""}])
    cart_file = File.get(File.cart == cart.id)
    assert utils.check_space_requirements(cart_file, cart, 1, True)
    assert not utils.check_space_requirements(cart_file, cart, 10**18, True)
    assert Cartutils.cart_status("pub") == ["error", "No Space Available"]
    assert (File.get_by_id(cart_file.id).status, File.get_by_id(cart_file.id).error) == ("error", "No Space Available")
    Cartutils.set_file_status(cart_file, cart, "staged", False)
    assert (File.get_by_id(cart_file.id).status, File.get_by_id(cart_file.id).error) == ("staged", "")


def test_prepare_bundle_then_tar_files_then_a_symlink(cart_database, tmp_path):
    utils, cart = _setup(tmp_path, bundle=True)
    utils.update_cart_files(cart, [{"id": "1", "path": "d/one", "hashtype": "md5", "hashsum": ""}])
    cart_file = File.get(File.cart == cart.id)
    assert not utils.prepare_bundle(cart.id)
    path = utils.file_path(cart, cart_file)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as handle:
        handle.write(b"hello")
    Cartutils.set_file_status(cart_file, cart, "staged", "")
    assert utils.prepare_bundle(cart.id)
    tar_path = utils.tar_files(cart.id)
    assert Cartutils.cart_status("pub") == ["ready", ""] and Cartutils.available_cart("pub") == tar_path
    with tarfile.open(tar_path) as tar:
        assert tar.extractfile("pub/d/one").read() == b"hello"
    assert not os.path.exists(path), "the staged copy stays after bundling"
    link = utils.create_symlink(cart.id)
    assert os.path.realpath(link) == tar_path
    with open(link, "rb") as handle, tarfile.open(fileobj=io.BytesIO(handle.read())) as linked:
        assert linked.getnames()[0] == "pub"
    File.update(status="error", error="gone").where(File.id == cart_file.id).execute()
    assert not utils.prepare_bundle(cart.id)
    assert Cartutils.cart_status("pub") == ["error", "Failed to pull file(gone)"]
