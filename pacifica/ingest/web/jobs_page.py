"""``/jobs``: the jobs at a glance, for people; server-rendered HTML, no front-end build.

``GET /jobs`` lists the recent jobs (user, state, stage, a progress bar from the bytes done of
the bytes in hand, size, age, duration), filtered by state and user, and refreshes itself.
``GET /jobs/<id>`` shows one job: its history, files and exception. The page follows the API's
trust rules (the user comes from the authenticating proxy's header); it is read-only unless the
user is one of ``[ingest] operators``, who may retry a failed job or fail a stuck one
(``POST /jobs/<id>`` with ``action=retry`` or ``action=fail``), recorded in the job's history.
"""

from __future__ import annotations

import datetime
import html
import itertools
import logging
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlparse

import cherrypy

from ...core.auth.identity import Identity
from ...core.auth.web import current_identity, owner_filter
from ...core.redact import public_text
from ...core.terminal import human_size
from ..common import states
from ..db import archived, models
from ..jobs import actions
from ..jobs.runtime import Runtime
from ..peers.base import ReadableMetadataPort
from ..volume.manifest import open_manifest
from .kit import current_runtime, database_errors, parse_job_id, visible_job

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 2
LIMIT = 100
FILES_SHOWN = 1000
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;width:100%}th,td{padding:.3rem .5rem;border-bottom:1px solid #ddd;text-align:left}
.bar{width:12rem;height:.8rem;background:#eee;border-radius:.4rem;overflow:hidden;display:inline-block}
.bar>span{display:block;height:100%;background:#3a7bd5}.FAILED{color:#b00020;font-weight:600}
.done{color:#1b7f3b}form{display:inline}pre{white-space:pre-wrap;background:#f6f6f6;padding:.5rem}
"""


def _page(title: str, body: str, refresh: bool) -> bytes:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    cherrypy.response.headers["Content-Type"] = "text/html; charset=utf-8"
    cherrypy.response.headers["Content-Security-Policy"] = PAGE_POLICY
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}<title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>").encode()


def _ago(moment: datetime.datetime | None, now: datetime.datetime) -> str:
    if moment is None:
        return ""
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _size(count: int | None) -> str:
    return human_size(int(count or 0))


def percent_done(row: models.IngestState) -> float:
    """How far the job is, for its bar: the bytes done of the bytes in hand (100 once complete)."""
    if row.complete and row.state == states.OK:
        return 100.0
    total = row.bytes_total or 0
    return round(100.0 * (row.bytes_done or 0) / total, 1) if total else float(row.task_percent or 0)


def _bar(row: models.IngestState) -> str:
    value = percent_done(row)
    return (f'<span class="bar" role="progressbar" aria-valuenow="{value}" aria-valuemin="0" '
            f'aria-valuemax="100" data-job="{int(row.job_id)}"><span style="width:{value}%"></span></span> {value}%')


def _state(row: models.IngestState) -> str:
    label = "complete" if row.complete and row.state == states.OK else row.state
    css = "done" if label == "complete" else row.state
    return f'<span class="{css}">{html.escape(label)}</span>'


PAGE_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; "
               "base-uri 'none'")


def is_operator(viewer: Identity) -> bool:
    """Whether ``viewer`` may act on jobs from the page (and see everyone's)."""
    return viewer.operator


# The orders the list offers, as its header says them.
ORDERS = {"changed": "last change", "id": "job id", "age": "age"}


def _arrived(row: models.IngestState) -> str:
    """The size column: the bundle's size, and for an upload that was cut, how much had arrived."""
    done, total = int(row.bytes_done or 0), int(row.bytes_total or 0)
    if row.task == states.UPLOADING and row.state == states.FAILED and done:
        return f"{_size(done)} of {_size(total)} arrived" if total else f"{_size(done)} arrived"
    return _size(total)


def _of(row: models.IngestState) -> str:
    """After a job's bar: of how much (or, for a cut upload, how much had arrived)."""
    arrived = _arrived(row)
    return f"({arrived})" if arrived.endswith("arrived") else f"of {arrived}"


def _sort_link(order: str, current: str, state: str | None, user: str | None) -> str:
    if order == current:
        return f"<b>{html.escape(ORDERS[order])}</b>"
    query = urlencode({key: value for key, value in (("state", state), ("user", user), ("sort", order)) if value})
    return f'<a href="/jobs?{html.escape(query)}">{html.escape(ORDERS[order])}</a>'


def _list(state: str | None, user: str | None, viewer: Identity, rt: Runtime, order: str = "changed") -> bytes:
    now = models.utcnow()
    order = order if order in ORDERS else "changed"
    query = models.recent_jobs(LIMIT, running=state == "running",
                               state=state if state in (states.OK, states.FAILED) else None,
                               submitters=[name for name in (user, owner_filter(viewer, rt.auth)) if name],
                               order=order)
    jobs = list(query)
    failing = archived.failing_jobs(row.job_id for row in jobs if row.complete)
    rows = []
    for row in jobs:
        finished = row.updated if row.complete else now
        badge = FIXITY_BADGE if row.job_id in failing else ""
        rows.append(
            f'<tr data-job="{int(row.job_id)}"><td><a href="/jobs/{int(row.job_id)}">{int(row.job_id)}</a></td>'
            f"<td>{html.escape(row.submitter or '')}</td><td>{_state(row)}{badge}</td><td>{html.escape(row.task)}</td>"
            f"<td>{_bar(row)}</td><td>{_arrived(row)}</td><td>{_ago(row.created, now)}</td>"
            f"<td>{_ago(row.created, finished) if row.created else ''}</td></tr>")
    options = "".join(f'<option value="{value}"{" selected" if value == (state or "") else ""}>{label}</option>'
                      for value, label in (("", "any state"), ("running", "running"), (states.OK, "OK"),
                                           (states.FAILED, "FAILED")))
    role = "operator" if is_operator(viewer) else "read-only"
    body = (f"<h1>Jobs</h1><p>Signed in as <b>{html.escape(viewer.user)}</b> ({role}); the page refreshes every "
            f"{REFRESH_SECONDS} s.</p>"
            f'<form method="get" action="/jobs"><select name="state">{options}</select> '
            f'<input name="user" placeholder="user" value="{html.escape(user or "")}"> '
            f'<input type="hidden" name="sort" value="{html.escape(order)}"> '
            f'<button type="submit">Filter</button></form>'
            f'<p class="order">The {LIMIT} jobs first by {html.escape(ORDERS[order])}, newest first. '
            f'Sort by: {" · ".join(_sort_link(name, order, state, user) for name in ORDERS)}</p>'
            "<table><thead><tr><th>job</th><th>user</th><th>state</th><th>stage</th><th>progress</th><th>size</th>"
            f"<th>age</th><th>duration</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return _page("Jobs", body, refresh=True)


def _files(job_id: int, rt: Runtime) -> list[dict[str, Any]]:
    """The first ``FILES_SHOWN`` files of a job: from its manifest while it is on the volume,
    else from the record of archived files, else from the document the embedded metadata peer
    kept (a metadata service keeps it there)."""
    manifest = open_manifest(rt.spool.manifest_path(job_id))
    if manifest is not None:
        with manifest:
            return [{"id": file_id, "name": name, "size": size}
                    for file_id, name, size in manifest.listing(FILES_SHOWN)]
    recorded = archived.due(job_id=job_id, limit=FILES_SHOWN)
    if recorded:
        return [{"id": row.file_id, "name": row.name.removeprefix("data/"), "size": row.size} for row in recorded]
    kept = rt.peers.metadata
    document = cast(ReadableMetadataPort, kept).files(job_id) if kept.readable else None
    return [{"id": item.get("_id"), "name": "/".join(filter(None, [item.get("subdir"), item.get("name")])),
             "size": item.get("size")} for item in itertools.islice(document or (), FILES_SHOWN)]


def _detail(job_id: int, viewer: Identity, rt: Runtime) -> bytes:
    row = visible_job(job_id, viewer)
    events = "".join(
        f"<li><time>{event.time:%Y-%m-%d %H:%M:%S}</time> {html.escape(event.state)} {html.escape(event.task)} "
        f"{float(event.task_percent or 0):g}%{' by ' + html.escape(event.operator) if event.operator else ''}"
        f"{': ' + html.escape(public_text(event.message)) if event.message else ''}</li>"
        for event in models.read_history(job_id))
    listed = _files(job_id, rt)
    files = "".join(f"<tr><td>{html.escape(str(item['id']))}</td><td>{html.escape(item['name'])}</td>"
                    f"<td>{_size(item['size'])}</td></tr>" for item in listed)
    actions = ""
    if is_operator(viewer):
        if row.state == states.FAILED:
            actions += _button(job_id, "retry", "Retry from its failed stage")
        if not row.complete:
            actions += _button(job_id, "fail", "Fail this job")
    exception = f"<h2>Exception</h2><pre>{html.escape(public_text(row.exception))}</pre>" if row.exception else ""
    body = (f'<p><a href="/jobs">All jobs</a></p><h1>Job {job_id}</h1>'
            f"<p>{_state(row)} in <b>{html.escape(row.task)}</b> {_bar(row)} {_of(row)}; "
            f"user {html.escape(row.submitter or 'unknown')}</p>{actions}{exception}{_fixity(job_id)}"
            f"<h2>History</h2><ol>{events}</ol><h2>Files</h2><table><thead><tr><th>id</th><th>name</th>"
            f"<th>size</th></tr></thead><tbody>{files}</tbody></table>{_more_files(row, len(listed))}"
            f"{_checks(job_id)}")
    return _page(f"Job {job_id}", body, refresh=not row.complete)


FIXITY_BADGE = ' <span class="FAILED" title="a fixity audit found a file changed or missing">fixity failed</span>'


CHECKS_SHOWN = 50


def _checks(job_id: int) -> str:
    """The job's last fixity checks, newest first (empty if none)."""
    events = archived.events_of(job_id)[-CHECKS_SHOWN:]
    if not events:
        return ""
    rows = "".join(f"<tr><td><time>{event.time:%Y-%m-%d %H:%M:%S}</time></td><td>{int(event.file_id)}</td>"
                   f"<td>{html.escape(event.algorithm)}</td><td><code>{html.escape(event.actual or '-')}</code></td>"
                   f'<td class="{"done" if event.outcome == archived.OK else "FAILED"}">{html.escape(event.outcome)}'
                   "</td></tr>" for event in reversed(events))
    return ("<h2>Fixity checks</h2><table><thead><tr><th>time</th><th>file</th><th>algorithm</th><th>found</th>"
            f"<th>outcome</th></tr></thead><tbody>{rows}</tbody></table>")


def _fixity(job_id: int) -> str:
    """The files of the job whose last fixity check failed, with both digests (empty if none)."""
    failing = archived.failing_files(job_id)
    if not failing:
        return ""
    rows = "".join(f"<tr><td>{int(item['file_id'])}</td><td>{html.escape(item['path'])}</td>"
                   f"<td>{html.escape(item['outcome'])}</td><td>{html.escape(item['checked'] or '')}</td>"
                   f"<td>{html.escape(item['algorithm'])}</td><td><code>{html.escape(item['expected'])}</code></td>"
                   f"<td><code>{html.escape(item['actual'])}</code></td></tr>" for item in failing)
    return ('<h2 class="FAILED">Fixity failed</h2><table class="fixity"><thead><tr><th>id</th><th>path</th>'
            "<th>outcome</th><th>checked</th><th>algorithm</th><th>expected</th><th>found</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _more_files(row: models.IngestState, listed: int) -> str:
    total = int(getattr(row, "files_total", 0) or 0)
    return f"<p>The first {listed} of {total} files.</p>" if listed >= FILES_SHOWN and total > listed else ""


def _button(job_id: int, action: str, label: str) -> str:
    return (f'<form method="post" action="/jobs/{job_id}"><input type="hidden" name="action" value="{action}">'
            f'<button type="submit" name="do" value="{action}">{html.escape(label)}</button></form> ')


def act(job_id: int, action: str, operator: str, rt: Runtime) -> None:
    """Retry a failed job from its failed stage, or fail an unfinished one; recorded in its history."""
    try:
        if action == "fail":
            actions.fail(job_id, operator, "the jobs page")
        elif action == "retry":
            actions.retry(job_id, operator, "the jobs page", rt.spool)
        else:
            raise cherrypy.HTTPError(400, f"action must be retry or fail, got {str(action)[:40]!r}")
    except actions.ActionRefused as exc:
        raise cherrypy.HTTPError(exc.status, str(exc)) from None


FORM = "application/x-www-form-urlencoded"
FORM_LIMIT = 4096


def _form_action() -> str:
    """The ``action`` of the form posted; 415 for any other body, 400 without one. Never from the
    query string: a link or an image must not be able to act."""
    try:
        length = int(cherrypy.request.headers.get("Content-Length") or 0)
    except ValueError:
        raise cherrypy.HTTPError(400, "Content-Length must be an integer") from None
    if length <= 0:
        raise cherrypy.HTTPError(400, "post the form's action (action=retry or action=fail) as the body")
    content_type = cherrypy.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != FORM:
        raise cherrypy.HTTPError(415, f"post the form as {FORM}")
    body = cherrypy.request.rfile.read(min(length, FORM_LIMIT)).decode("utf-8", "replace")
    action = parse_qs(body).get("action")
    if not action:
        raise cherrypy.HTTPError(400, "the form has no action (action=retry or action=fail)")
    return action[0]


def same_origin() -> str | None:
    """What is wrong with where an operator's POST came from, or None for this site's own page.

    Browsers send ``Sec-Fetch-Site`` and ``Origin`` with every cross-site form; a request with
    neither comes from a non-browser client (curl), which no other site can make a browser send.
    """
    headers = cherrypy.request.headers
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        # The browser's own word, which no page can set: enough on its own.
        if fetch_site in ("same-origin", "none"):
            return None
        return f"a {fetch_site} request may not act on jobs (Sec-Fetch-Site)"
    origin = headers.get("Origin")
    if origin is not None:
        host = headers.get("Host", "")
        if origin == "null" or urlparse(origin).netloc != host:
            return f"a request from origin {origin[:80]!r} may not act on jobs on {host[:80]!r}"
    return None


class JobsPage:
    """``/jobs`` and ``/jobs/<id>``."""

    exposed = True
    # The form is read here: CherryPy's own body parsing answers 500 to a malformed multipart body.
    _cp_config = {"request.process_request_body": False}

    @staticmethod
    def GET(job_id: Any = None, state: Any = None, user: Any = None, sort: Any = None, **_ignored: Any) -> bytes:
        """The list of recent jobs (``sort``: changed, id or age), or one job."""
        rt = current_runtime()
        viewer = current_identity("read")
        with database_errors():
            if job_id is None:
                return _list(str(state) if state else None, str(user) if user else None, viewer, rt,
                             str(sort) if sort else "changed")
            return _detail(parse_job_id(job_id), viewer, rt)

    @staticmethod
    def POST(job_id: Any = None, **_ignored: Any) -> bytes:
        """An operator's action on a job; then back to the job's page."""
        rt = current_runtime()
        viewer = current_identity()
        job = parse_job_id(job_id)
        cross_site = same_origin()
        if cross_site:
            raise cherrypy.HTTPError(403, cross_site)
        if not is_operator(viewer):
            raise cherrypy.HTTPError(403, f"{viewer.user} is not an operator: the jobs page is read-only "
                                          "(operators are listed in [ingest] operators)")
        action = _form_action()
        with database_errors(job):
            act(job, action, viewer.user, rt)
        raise cherrypy.HTTPRedirect(f"/jobs/{job}?{urlencode({'done': action})}", 303)
