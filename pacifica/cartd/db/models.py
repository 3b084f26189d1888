"""The cart models (peewee), with the published model and method names.

``DB`` is a ``peewee.DatabaseProxy``: nothing connects at import; the composition root points it
at the configured database. The schema itself is built and moved forward by ``migrations``; the
published ``orm`` module re-exports these models with ``OrmSync``.
"""

from __future__ import annotations

import datetime

import peewee

from ...core.auth.tokens import token_model
from ...core.models import ConnectionMethods, SchemaVersionMethods
from . import migrations

DB = peewee.DatabaseProxy()


class CartBase(ConnectionMethods, peewee.Model):
    """Base Cart Model class."""

    class Meta:
        database = DB

    def reload(self):
        """Reload my current state from the DB."""
        return type(self).get_by_id(self.get_id())


class CartSystem(SchemaVersionMethods, CartBase):
    """Cart Schema Version Model: rows ``('major', M)`` and ``('minor', m)``."""

    part = peewee.CharField(primary_key=True)
    value = peewee.IntegerField(default=-1)

    class Meta:
        table_name = migrations.VERSION_TABLE

    schema = migrations.SCHEMA


class Cart(CartBase):
    """Cart object model."""

    id = peewee.AutoField()
    cart_uid = peewee.CharField(default="1")
    bundle_path = peewee.CharField(default="")
    bundle = peewee.BooleanField(default=False, null=True)
    creation_date = peewee.DateTimeField(default=datetime.datetime.now)
    updated_date = peewee.DateTimeField(default=datetime.datetime.now)
    deleted_date = peewee.DateTimeField(null=True)
    status = peewee.TextField(default="waiting")
    error = peewee.TextField(default="")
    # Schema 2.1: who made the cart (NULL for carts from before, and from the published code).
    owner = peewee.CharField(null=True)

    class Meta:
        table_name = "cart"


class CartTasks(CartBase):
    """List of tasks based on a cart ID."""

    id = peewee.AutoField()
    cart_id = peewee.ForeignKeyField(Cart, index=True)
    celery_task_id = peewee.CharField(default="")

    class Meta:
        table_name = "carttasks"


class File(CartBase):
    """File object model to keep track of what's been downloaded for a cart."""

    id = peewee.AutoField()
    cart = peewee.ForeignKeyField(Cart, field="id", backref="files")
    file_name = peewee.CharField(default="")
    bundle_path = peewee.CharField(default="")
    hash_type = peewee.CharField(null=True)
    hash_value = peewee.CharField(null=True)
    status = peewee.TextField(default="waiting")
    error = peewee.TextField(default="")

    class Meta:
        table_name = "file"


# Schema 2.1: API tokens (``pacifica-cartd-cmd token``); only their digests are kept.
CartToken = token_model(DB, migrations.TOKEN_TABLE)
