"""The jobs page in a real browser (Debian's Chromium, driven by Playwright): a bundle's job
appears, its bar moves as the bytes arrive and it completes; an operator fails a stuck job and
retries a failed one; a user who is not an operator sees no action and is refused one."""

from __future__ import annotations

import os
import shutil

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.support.bundles import make_bundle

TUS = {"Tus-Resumable": "1.0.0"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


LOCATIONS: dict[int, str] = {}


def _create(url: str, length: int, user: str) -> int:
    created = requests.post(url + "/uploads/", headers={**TUS, "Upload-Length": str(length),
                                                        "X-Http-Authed-User": user}, timeout=30)
    assert created.status_code == 201, created.text
    job = created.json()["job_id"]
    LOCATIONS[job] = created.headers["Location"]
    return job


def _patch(url: str, job: int, offset: int, chunk: bytes, user: str = "carol") -> None:
    # The upload is its creator's, at the URL it was given (the job id alone is not enough).
    sent = requests.patch(LOCATIONS[job], data=chunk, timeout=60, headers={
        **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
        "X-Http-Authed-User": user})
    assert sent.status_code == 204, sent.text


@pytest.fixture
def browser():
    assert CHROMIUM, "Chromium is not installed: apt-get install chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def test_the_jobs_page_for_an_operator_and_for_a_user(tmp_path, browser):
    from tests.conftest import embedded_stack

    stack = embedded_stack("jobs-page", tmp_path / "s", operators="alice")
    stack.start_server()
    try:
        alice = browser.new_context(extra_http_headers={"X-Http-Authed-User": "alice"},
                                    viewport={"width": 1200, "height": 700})
        page = alice.new_page()
        bundle = tmp_path / "b.tar"
        make_bundle(str(bundle), {"data/run/a.bin": os.urandom(1_500_000), "data/run/b.txt": b"b\n" * 1000})
        body = bundle.read_bytes()
        job = _create(stack.url, len(body), "carol")

        # The job appears, UPLOADING with an empty bar, under the user who sent it.
        page.goto(stack.url + "/jobs")
        row = page.locator(f'tr[data-job="{job}"]')
        expect(row).to_contain_text("carol")
        expect(row).to_contain_text("UPLOADING")
        bar = row.locator('[role="progressbar"]')
        expect(bar).to_have_attribute("aria-valuenow", "0.0")
        # Half the bytes: the bar moves (the page refreshes itself).
        half = len(body) // 2
        _patch(stack.url, job, 0, body[:half])
        expect(bar).to_have_attribute("aria-valuenow", str(round(100 * half / len(body), 1)), timeout=15_000)
        # The rest: the job runs its stages and completes.
        _patch(stack.url, job, half, body[half:])
        expect(row.locator(".done")).to_have_text("complete", timeout=60_000)
        expect(bar).to_have_attribute("aria-valuenow", "100.0")

        # The filter by user and by state.
        other = _create(stack.url, 10_240, "dave")
        page.goto(stack.url + "/jobs?user=carol")
        expect(page.locator(f'tr[data-job="{job}"]')).to_have_count(1)
        expect(page.locator(f'tr[data-job="{other}"]')).to_have_count(0)
        page.goto(stack.url + "/jobs?state=running")
        expect(page.locator(f'tr[data-job="{other}"]')).to_have_count(1)
        expect(page.locator(f'tr[data-job="{job}"]')).to_have_count(0)

        # The operator fails the stuck upload; the history says who.
        page.goto(f"{stack.url}/jobs/{other}")
        page.get_by_role("button", name="Fail this job").click()
        expect(page.locator("h1")).to_have_text(f"Job {other}")
        expect(page.locator("body")).to_contain_text("FAILED")
        expect(page.locator("ol")).to_contain_text("by alice")
        assert stack.state(other).json()["state"] == "FAILED"

        # A bundle that is not a tar fails 'open tar'; the operator retries it from there.
        broken = stack.tus_send(b"not a tar" * 200, user="carol")
        stack.wait_complete(broken, 60)
        page.goto(f"{stack.url}/jobs/{broken}")
        expect(page.locator("pre")).to_contain_text("tar")
        page.get_by_role("button", name="Retry from its failed stage").click()
        expect(page.locator("ol")).to_contain_text("retried by alice", timeout=15_000)

        # Bob is not an operator: no buttons, and a POST is refused (403) and changes nothing.
        stuck = _create(stack.url, 10_240, "carol")
        bob = browser.new_context(extra_http_headers={"X-Http-Authed-User": "bob"})
        bob_page = bob.new_page()
        bob_page.goto(f"{stack.url}/jobs/{stuck}")
        expect(bob_page.get_by_role("button")).to_have_count(0)
        refused = bob.request.post(f"{stack.url}/jobs/{stuck}", form={"action": "fail"})
        assert refused.status == 403 and "not an operator" in refused.json()["message"]
        assert stack.state(stuck).json()["state"] == "OK"

        # The README's picture: PACIFICA_SCREENSHOTS=docs .venv/bin/python -m pytest -k jobs_page
        page.goto(stack.url + "/jobs")
        expect(page.locator("tbody tr")).to_have_count(4)
        page.screenshot(path=os.path.join(os.environ.get("PACIFICA_SCREENSHOTS") or str(tmp_path), "jobs-page.png"))
    finally:
        stack.stop()
