"""Every name the published manual documents is importable with its documented signature,
and importing the package does no I/O and reads no configuration."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

DOCUMENTED = {
    "pacifica.ingest.config": {"get_config": []},
    "pacifica.ingest.orm": {
        "read_state": ["job_id"],
        "update_state": ["job_id", "state", "task", "task_percent", "exception"],
        "BaseModel": None, "IngestState": None, "IngestStateSystem": None, "OrmSync": None,
    },
    "pacifica.ingest.rest": {
        "error_page_default": None, "get_authed_user": ["func"], "get_remote_user": [],
        "RestIngestState": None, "RestMove": None, "RestUpload": None, "Root": None,
    },
    "pacifica.ingest.tarutils": {
        "FileIngestor": ["hashtype", "hashcode", "file_id"], "HashValidationException": None,
        "MetaParser": [], "TarIngestor": ["tar", "meta"], "file_count": ["tar"], "get_clipped": ["fname"],
        "open_tar": ["fpath"], "patch_files": ["meta_obj"],
    },
    "pacifica.ingest.tasks": {
        "IngestException": None, "ingest_check_tarfile": ["job_id", "filepath"],
        "ingest_files": ["job_id", "ingest_obj"], "ingest_metadata": ["job_id", "meta"],
        "ingest_metadata_parser": ["job_id", "tar"], "ingest_policy_check": ["job_id", "meta_str", "authed_user"],
        "move_files": ["job_id", "meta_obj"], "move_metadata_parser": ["job_id", "metafile"],
        "validate_meta": ["meta_str", "authed_user"],
    },
    "pacifica.ingest.utils": {
        "create_state_response": ["record"], "get_unique_id": ["id_range", "mode"], "parse_size": ["size"],
    },
}


@pytest.mark.parametrize("module_name", sorted(DOCUMENTED))
def test_documented_names(module_name):
    module = importlib.import_module(module_name)
    for name, params in DOCUMENTED[module_name].items():
        obj = getattr(module, name)
        if params is not None:
            target = obj.__init__ if inspect.isclass(obj) else obj
            names = [p for p in inspect.signature(target).parameters if p not in ("self", "cls")]
            assert names[:len(params)] == params, f"{module_name}.{name}{names}"


def test_documented_members():
    from pacifica.ingest import orm, rest, tarutils

    for attr in ("atomic", "database_connect", "database_close", "job_id", "state", "task", "task_percent",
                 "exception", "complete", "created", "updated"):
        assert hasattr(orm.IngestState, attr), attr
    for attr in ("get_or_create_version", "get_version", "is_equal", "is_safe", "part", "value"):
        assert hasattr(orm.IngestStateSystem, attr), attr
    for attr in ("dbconn_blocking", "update_0_0_to_1_0", "update_1_0_to_2_0", "update_2_0_to_2_1",
                 "update_tables", "versions"):
        assert hasattr(orm.OrmSync, attr), attr
    assert orm.OrmSync.versions[:3] == [(0, 0), (1, 0), (2, 0)], "the published versions come first"
    for attr in ("get_state", "move", "upload", "GET"):
        assert hasattr(rest.Root, attr), attr
    for attr in ("clean_metadata", "file_obj_count", "get_fname", "get_hash", "get_subdir", "load_meta",
                 "post_metadata", "read_meta"):
        assert hasattr(tarutils.MetaParser, attr), attr
    for attr in ("read", "upload_file_in_file", "validate_hash"):
        assert hasattr(tarutils.FileIngestor, attr), attr
    assert issubclass(tarutils.HashValidationException, Exception)
    assert tarutils.TarIngester is tarutils.TarIngestor and tarutils.FileIngester is tarutils.FileIngestor


IMPORT_CHECK = """
import pacifica.ingest, pacifica.ingest.config, pacifica.ingest.globals, pacifica.ingest.orm
import pacifica.ingest.rest, pacifica.ingest.tarutils, pacifica.ingest.tasks, pacifica.ingest.utils
import pacifica.ingest.__main__, pacifica.ingest.jobs.pipeline, pacifica.ingest.app.bootstrap
from pacifica.ingest import orm, tasks
assert orm.DB.obj is None, "the database was set up at import"
assert not tasks.INGEST_APP.configured, "the Celery app read its configuration at import"
assert not tasks.INGEST_APP.has_runtime(), "the runtime was built at import"
print("clean")
"""


def test_import_does_no_io_and_reads_no_config(tmp_path):
    result = subprocess.run([sys.executable, "-c", IMPORT_CHECK], capture_output=True, text=True, timeout=60,
                            env={"INGEST_CONFIG": str(tmp_path / "does-not-exist.ini"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"
