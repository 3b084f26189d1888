"""Cartd's schema: the published tables and versions 0.1 -> 1.0 -> 2.0, on SQLite, PostgreSQL
and MariaDB, through the published ``OrmSync`` and ``CartSystem`` faces."""

from __future__ import annotations

import datetime

import peewee

from pacifica.cartd.compat.orm import Cart, CartSystem, CartTasks, File, OrmSync
from pacifica.cartd.db import migrations


def columns(db, table):
    return {column.name for column in db.get_columns(table)}


def test_empty_database_reaches_2_1_with_the_published_tables_and_owners(cart_database):
    assert migrations.is_empty(cart_database) and CartSystem.get_version() == (0, 0)
    assert not CartSystem.is_safe()
    assert OrmSync.create_tables() == (2, 1)
    assert CartSystem.is_equal() and CartSystem.is_safe()
    # The published columns, and (2.1) who made each cart.
    assert columns(cart_database, "cart") == {"id", "cart_uid", "bundle_path", "bundle", "creation_date",
                                              "updated_date", "deleted_date", "status", "error", "owner"}
    assert columns(cart_database, "file") == {"id", "cart_id", "file_name", "bundle_path", "hash_type",
                                              "hash_value", "status", "error"}
    assert columns(cart_database, "carttasks") == {"id", "cart_id", "celery_task_id"}
    assert columns(cart_database, "carttoken") >= {"digest", "user", "scopes", "expires", "last_used", "revoked"}
    assert OrmSync.versions == [(0, 1), (1, 0), (2, 0), (2, 1)]
    assert migrations.SCHEMA.upgrade(cart_database) == []


def test_a_0_1_database_with_carts_is_upgraded_keeping_them(cart_database):
    assert migrations.SCHEMA.upgrade(cart_database, target=(0, 1)) == [(0, 1)]
    assert "bundle" not in columns(cart_database, "cart")
    assert not cart_database.table_exists("carttasks")
    now = datetime.datetime(2019, 1, 9, 9, 17, 26)
    cart_database.execute_sql(
        "INSERT INTO cart (cart_uid, bundle_path, creation_date, updated_date, status, error) "
        f"VALUES ({', '.join([cart_database.param] * 6)})", ("abc", "/v/abc", now, now, "ready", ""))
    OrmSync.update_0_1_to_1_0()
    assert CartSystem.get_version() == (1, 0) and not CartSystem.is_safe()
    OrmSync.update_tables()
    assert CartSystem.is_equal()
    cart = Cart.get(Cart.cart_uid == "abc")
    assert (cart.status, cart.bundle_path, cart.creation_date, cart.bundle in (None, False)) == \
        ("ready", "/v/abc", now, True)


def test_models_keep_carts_their_files_and_tasks(cart_database):
    OrmSync.update_tables()
    with Cart.atomic():
        cart = Cart.create(cart_uid="uid-1", bundle_path="/v/uid-1")
        File.create(cart=cart, file_name="1234", bundle_path="/v/uid-1/a/b.txt", hash_type="md5",
                    hash_value="0" * 32)
        CartTasks.create(cart_id=cart, celery_task_id="task-1")
    again = Cart.get_by_id(cart.id)
    assert (again.status, again.error, again.bundle) == ("waiting", "", False)
    assert [(item.file_name, item.status) for item in again.files] == [("1234", "waiting")]
    assert [task.celery_task_id for task in CartTasks.select().where(CartTasks.cart_id == cart)] == ["task-1"]
    cart.status = "ready"
    cart.save()
    assert again.reload().status == "ready"
    Cart.database_close()
    Cart.database_connect()
    assert Cart.select().count() == 1


def test_unknown_version_is_refused(cart_database):
    OrmSync.update_tables()
    CartSystem.update(value=7).where(CartSystem.part == "major").execute()
    assert not CartSystem.is_safe()
    try:
        OrmSync.update_tables()
    except peewee.DatabaseError as exc:
        assert "7.1" in str(exc)
    else:
        raise AssertionError("an unknown schema version was accepted")
