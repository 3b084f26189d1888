"""Schema versions (0,0) -> (1,0) -> (2,0) -> (2,1) -> (2,2) on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime

import peewee

from pacifica.ingest.compat.orm import IngestState, IngestStateSystem, OrmSync, read_history, read_state, update_state
from pacifica.ingest.db import migrations


def columns(db, table):
    return {column.name for column in db.get_columns(table)}


def test_empty_database_is_version_0_0_and_unsafe(database):
    assert migrations.get_version(database) == (0, 0)
    assert migrations.is_empty(database)
    assert not IngestStateSystem.is_safe() and not IngestStateSystem.is_equal()


def test_step_0_0_to_1_0_creates_the_table_without_complete(database):
    assert migrations.upgrade(database, target=(1, 0)) == [(1, 0)]
    assert migrations.get_version(database) == (1, 0)
    assert columns(database, "ingeststate") == {"id", "state", "task", "task_percent", "exception",
                                                "created", "updated"}
    assert not IngestStateSystem.is_safe()


def test_step_1_0_to_2_0_adds_complete_and_keeps_rows(database):
    migrations.upgrade(database, target=(1, 0))
    now = datetime.datetime(2019, 1, 9, 9, 17, 26)
    database.execute_sql(
        "INSERT INTO ingeststate (id, state, task, task_percent, exception, created, updated) "
        f"VALUES (7, 'OK', 'ingest metadata', 100, '', {database.param}, {database.param})", (now, now))
    assert migrations.upgrade(database, target=(2, 0)) == [(2, 0)]
    assert "complete" in columns(database, "ingeststate")
    row = database.execute_sql("SELECT state, task, task_percent, complete, created FROM ingeststate "
                               "WHERE id = 7").fetchone()
    assert (row[0], row[1], float(row[2]), bool(row[3])) == ("OK", "ingest metadata", 100.0, False)
    assert IngestStateSystem.is_safe() and not IngestStateSystem.is_equal()


def _published_insert(database, job_id, state, task, percent, exception="", complete=False):
    """Insert a job row as the published 0.4.x code does (only the 2.0 columns)."""
    now = datetime.datetime(2020, 5, 1, 12, 0, job_id % 60)
    database.execute_sql(
        "INSERT INTO ingeststate (id, state, task, task_percent, exception, complete, created, updated) "
        f"VALUES ({', '.join([database.param] * 8)})", (job_id, state, task, percent, exception, complete, now, now))


def test_step_2_0_to_2_1_adds_the_embedded_peer_tables(database):
    migrations.upgrade(database, target=(2, 0))
    _published_insert(database, 8, "OK", "UPLOADING", 0)
    assert migrations.upgrade(database, target=(2, 1)) == [(2, 1)]
    assert columns(database, "ingestuniqueid") == {"mode", "next_index"}
    assert columns(database, "ingestmetadata") == {"job_id", "document", "created"}
    assert IngestStateSystem.get_version() == (2, 1)


def test_upgrade_of_a_2_0_database_holding_jobs_to_2_4(database):
    """A database the published service wrote: its jobs keep every field, gain zero progress and
    a history that starts with their state; the published code can still insert rows after."""
    migrations.upgrade(database, target=(2, 0))
    _published_insert(database, 11, "OK", "ingest metadata", 100, complete=True)
    _published_insert(database, 12, "FAILED", "Policy Validation", 0, "project 9 is not valid", True)
    _published_insert(database, 13, "OK", "ingest files", 42.5)
    assert migrations.upgrade(database) == [(2, 1), (2, 2), (2, 3), (2, 4), (2, 5), (2, 6)]
    assert set(migrations.PROGRESS_COLUMNS) | {"submitter"} <= columns(database, "ingeststate")
    assert columns(database, "ingeststateevent") == {"event_id", "job_id", "time", "state", "task", "task_percent",
                                                     "message", "operator"}
    assert columns(database, "ingestcallback") >= {"job_id", "url", "status", "attempts"}
    failed = read_state(12)
    assert (failed.state, failed.task, failed.exception, failed.complete) == \
        ("FAILED", "Policy Validation", "project 9 is not valid", True)
    assert (failed.bytes_done, failed.files_total) == (None, None)
    running = read_state(13)
    assert (running.task, float(running.task_percent), running.complete) == ("ingest files", 42.5, False)
    [first] = read_history(12)
    assert (first.state, first.task, first.message, first.time) == \
        ("FAILED", "Policy Validation", "project 9 is not valid", failed.updated)
    # Rows written by the published code after the upgrade are still valid.
    _published_insert(database, 14, "OK", "UPLOADING", 0)
    assert read_state(14).bytes_total is None
    update_state(13, "OK", "ingest files", 50, progress=(5, 10, 1, 2), event=False)
    assert (read_state(13).bytes_done, read_state(13).files_total) == (5, 2)
    assert len(read_history(13)) == 1
    update_state(13, "FAILED", "ingest files", 0, "stopped", operator="alice")
    assert [(event.state, event.operator) for event in read_history(13)] == [("OK", None), ("FAILED", "alice")]
    assert IngestStateSystem.is_equal()


def test_upgrade_from_nothing_to_latest_twice_is_a_no_op(database):
    assert migrations.upgrade(database) == [(1, 0), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4), (2, 5), (2, 6)]
    update_state(1, "OK", "UPLOADING", 0)
    assert migrations.upgrade(database) == []
    assert IngestStateSystem.get_version() == (2, 6)
    assert IngestState.select().count() == 1


def test_orm_sync_facade_runs_the_same_steps(database):
    OrmSync.update_0_0_to_1_0()
    assert IngestStateSystem.get_version() == (1, 0)
    OrmSync.update_1_0_to_2_0()
    assert IngestStateSystem.get_version() == (2, 0)
    OrmSync.update_2_0_to_2_1()
    assert IngestStateSystem.get_version() == (2, 1)
    OrmSync.update_tables()
    assert IngestStateSystem.get_version() == (2, 6)
    assert OrmSync.versions == [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4), (2, 5), (2, 6)]


def test_interrupted_step_can_run_again(database):
    """MySQL DDL is not transactional: a step whose version was not recorded must be re-runnable."""
    migrations.step_0_0_to_1_0(database)
    migrations.step_0_0_to_1_0(database)
    migrations.upgrade(database, target=(1, 0))
    migrations.step_1_0_to_2_0(database)
    assert migrations.upgrade(database, target=(2, 1)) == [(2, 0), (2, 1)]
    migrations.step_2_1_to_2_2(database)
    migrations.step_2_1_to_2_2(database)
    migrations.step_2_2_to_2_3(database)
    assert migrations.upgrade(database) == [(2, 2), (2, 3), (2, 4), (2, 5), (2, 6)]
    migrations.step_2_2_to_2_3(database)
    assert "complete" in columns(database, "ingeststate") and "submitter" in columns(database, "ingeststate")


def test_unknown_version_is_refused(database):
    migrations.upgrade(database)
    IngestStateSystem.update(value=9).where(IngestStateSystem.part == "major").execute()
    assert not IngestStateSystem.is_safe()
    try:
        migrations.upgrade(database)
    except peewee.DatabaseError as exc:
        assert "9.6" in str(exc)
    else:
        raise AssertionError("upgrade accepted an unknown schema version")


def test_update_state_rules(database):
    migrations.upgrade(database)
    update_state(5, "OK", "ingest files", 42.5)
    row = read_state(5)
    assert (row.state, row.task, float(row.task_percent), row.complete) == ("OK", "ingest files", 42.5, False)
    update_state(5, "OK", "ingest metadata", 100)
    assert read_state(5).complete
    update_state(6, "FAILED", "open tar", 0, "bad tar")
    assert read_state(6).complete and read_state(6).exception == "bad tar"
    try:
        read_state(404)
    except IngestState.DoesNotExist:
        pass
    else:
        raise AssertionError("read_state of an unknown job returned a row")


def test_checking_the_schema_leaves_no_pooled_connection_for_forked_workers_to_share(database):
    """uWSGI forks its workers after the schema is checked: a connection the pool kept would be the
    same socket in every worker (two processes' queries interleaved on one PostgreSQL session)."""
    from playhouse.pool import PooledDatabase

    from pacifica.core.schema import ensure_schema

    ensure_schema(migrations.SCHEMA, database, migrations.TABLES, "pacifica-ingest-cmd")
    assert database.is_closed()
    if isinstance(database, PooledDatabase):
        assert not database._connections and not database._in_use
