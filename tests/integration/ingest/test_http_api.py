"""The HTTP contract: JSON everywhere, 4xx for client mistakes, never a traceback."""

from __future__ import annotations

import requests

from tests.support.bundles import make_bundle


def assert_json_error(response, status, fragment):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert fragment in body["message"]
    assert "traceback" not in body and "Traceback" not in response.text


def test_root_says_it_is_up(stack):
    response = requests.get(stack.url + "/", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"message": "Pacifica Ingest Up and Running"}


def test_get_state_validates_job_id(stack):
    assert_json_error(requests.get(stack.url + "/get_state", timeout=10), 400, "job_id is required")
    assert_json_error(stack.state("abc"), 400, "must be an integer")
    assert_json_error(stack.state("-4"), 400, "must not be negative")
    assert_json_error(stack.state("1.5"), 400, "must be an integer")


def test_malformed_move_body_is_400(stack):
    response = requests.post(stack.url + "/move", data=b"{not json", timeout=10,
                             headers={"Content-Type": "application/json"})
    assert_json_error(response, 400, "not valid JSON")


def test_unknown_path_and_method_are_json(stack):
    assert_json_error(requests.get(stack.url + "/nowhere", timeout=10), 404, "Nothing matches")
    response = requests.put(stack.url + "/", data=b"x", timeout=10)
    assert response.status_code == 405
    assert response.headers["Content-Type"].startswith("application/json")


def test_ingest_alias_and_any_content_type(stack, tmp_path):
    """``/ingest`` is ``/upload``; a curl-style form content type must not make CherryPy parse the tar."""
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/x/one.txt": b"one\n"})
    with open(path, "rb") as body:
        response = requests.post(stack.url + "/ingest", data=body, timeout=30,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text
    final = stack.wait_complete(response.json()["job_id"])
    assert (final["state"], final["task"]) == ("OK", "ingest metadata"), final


def test_default_user_when_no_auth_header(http_stack, peers, tmp_path):
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/x/two.txt": b"two\n"})
    job_id = http_stack.upload(path).json()["job_id"]
    http_stack.wait_complete(job_id)
    assert peers.policy_requests_for(job_id) == [b"root"]


def test_chunked_upload_without_content_length(stack, tmp_path):
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/x/three.txt": b"three\n" * 1000})
    data = path.read_bytes()

    def chunks():
        for start in range(0, len(data), 1000):
            yield data[start:start + 1000]

    response = requests.post(stack.url + "/upload", data=chunks(), timeout=30)
    assert response.status_code == 200, response.text
    final = stack.wait_complete(response.json()["job_id"])
    assert final["state"] == "OK", final
