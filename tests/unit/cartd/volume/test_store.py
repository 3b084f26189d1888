"""A full volume evicts the least recently *used* cart, never the one being made, never one used
within ``lru_buffer_time``."""

from __future__ import annotations

import datetime
import os

from pacifica.cartd.compat.orm import Cart, OrmSync
from pacifica.cartd.utils import Cartutils


def _cart(utils: Cartutils, uid: str, status: str, used_minutes_ago: float) -> Cart:
    when = datetime.datetime.now() - datetime.timedelta(minutes=used_minutes_ago)
    cart = Cart.create(cart_uid=uid, status=status, updated_date=when, creation_date=when)
    Cart.update(bundle_path=utils.cart_directory(cart)).where(Cart.id == cart.id).execute()
    os.makedirs(utils.cart_directory(cart))
    with open(os.path.join(utils.cart_directory(cart), "f.bin"), "wb") as handle:
        handle.write(b"x" * 10)
    return cart


def test_least_recently_used_cart_goes_first(cart_database, tmp_path):
    OrmSync.update_tables()
    utils = Cartutils(str(tmp_path), lru_buffer_time=120)
    old = _cart(utils, "old", "ready", 60)
    older_but_used = _cart(utils, "used", "ready", 90)
    recent = _cart(utils, "recent", "ready", 1)
    making = _cart(utils, "making", "staging", 600)
    # Downloading a cart counts as using it.
    assert Cartutils.available_cart("used") == utils.cart_directory(older_but_used)
    assert utils.lru_cart_delete(making)
    assert Cart.get_by_id(old.id).deleted_date is not None
    assert not os.path.exists(utils.cart_directory(old))
    assert Cartutils.cart_status("old") == ["error", "No cart with uid old found"]
    # Only carts unused for lru_buffer_time seconds go; the one being made never does.
    assert not utils.lru_cart_delete(making), "a cart used within lru_buffer_time was evicted"
    assert Cart.get_by_id(making.id).deleted_date is None
    assert Cart.get_by_id(recent.id).deleted_date is None


def test_check_space_requirements_evicts_until_it_fits_or_says_no(cart_database, tmp_path):
    OrmSync.update_tables()
    utils = Cartutils(str(tmp_path), lru_buffer_time=0)
    making = _cart(utils, "making", "staging", 0)
    assert utils.make_room(making, 1)
    assert not utils.make_room(making, 10**18)  # nothing left to evict
