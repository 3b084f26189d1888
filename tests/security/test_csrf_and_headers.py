"""The jobs page cannot be driven from another site: operator actions only as a same-origin form
body; every answer carries nosniff, a CSP with frame-ancestors 'none' and no framing."""

from __future__ import annotations

import requests

TUS = {"Tus-Resumable": "1.0.0"}


def _stuck_job(stack) -> int:
    created = requests.post(stack.url + "/uploads/", headers={**TUS, "Upload-Length": "1000"}, timeout=10)
    return created.json()["job_id"]


def test_cross_site_and_query_string_actions_change_nothing(ingest):
    stack = ingest("csrf", operators="root")  # the anonymous loopback user is the operator here
    job_id = _stuck_job(stack)
    url = f"{stack.url}/jobs/{job_id}"
    attempts = [
        ({"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"}, "action=fail", {}),
        ({"Origin": "null", "Content-Type": "application/x-www-form-urlencoded"}, "action=fail", {}),
        ({"Sec-Fetch-Site": "cross-site", "Content-Type": "application/x-www-form-urlencoded"}, "action=fail", {}),
        ({"Sec-Fetch-Site": "same-site", "Content-Type": "application/x-www-form-urlencoded"}, "action=fail", {}),
        ({}, None, {"action": "fail"}),  # ?action=fail with no body: a link or an <img> could send it
        ({"Content-Type": "text/plain"}, "action=fail", {}),
    ]
    for headers, body, params in attempts:
        answer = requests.post(url, headers=headers, data=body, params=params, timeout=10, allow_redirects=False)
        assert answer.status_code in (400, 403, 415), (headers, params, answer.status_code)
        assert answer.headers["Content-Type"].startswith("application/json")
        state = requests.get(stack.url + "/get_state", params={"job_id": job_id}, timeout=10).json()
        assert state["state"] == "OK", (headers, params, state)
    same = requests.post(url, data={"action": "fail"}, allow_redirects=False, timeout=10,
                         headers={"Origin": stack.url, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 303, same.text
    assert requests.get(stack.url + "/get_state", params={"job_id": job_id}, timeout=10).json()["state"] == "FAILED"


def test_every_answer_forbids_sniffing_and_framing(ingest):
    stack = ingest("headers")
    job_id = _stuck_job(stack)
    answers = [requests.get(stack.url + path, timeout=10) for path in
               ("/", "/get_state?job_id=1", "/get_state?job_id=x", "/jobs", f"/jobs/{job_id}", "/nothing-here",
                "/openapi.json", "/health")]
    answers.append(requests.post(stack.url + "/upload", data=b"", timeout=10))
    for answer in answers:
        headers = answer.headers
        assert headers["X-Content-Type-Options"] == "nosniff", answer.url
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], answer.url
        assert headers["X-Frame-Options"] == "DENY", answer.url
    page = requests.get(f"{stack.url}/jobs", timeout=10).headers["Content-Security-Policy"]
    assert "script-src" not in page and "default-src 'none'" in page, "the page may run no script at all"
