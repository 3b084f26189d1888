"""Load users, projects, instruments and who may use what into a Pacifica metadata service.

    python3 load.py [--url http://metadata:8121] FILE.json [FILE.json ...]

Each file is a JSON object whose keys are metadata tables (``users``, ``projects``,
``instruments``, ``project_user``, ``project_instrument``, ``instrument_user``, or any other
table the service has) and whose values are lists of objects, as the metadata service's
``PUT /<table>`` takes them. Tables are loaded in the order above, then the others in file
order. A ``relationship`` may be given by name (``member_of``, ``custodian``...): it is replaced
by that relationship's uuid. An object already there (same ``_id``, or same fields for a link
table) is left as it is, so a file can be loaded again after it grew.

The policy service lets user U ingest into project P with instrument I when U is a
``member_of`` P (project_user), I belongs to P (project_instrument), and U is a ``custodian``
of I (instrument_user).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ORDER = ("users", "projects", "instruments", "project_user", "project_instrument", "instrument_user")


def _call(method: str, url: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def wait_for(url: str, seconds: float) -> None:
    """Wait until the metadata service answers (it may still be starting)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            _call("GET", f"{url}/relationships")
            return
        except (urllib.error.URLError, OSError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"the metadata service at {url} did not answer: {exc}") from None
            time.sleep(2)


def load(url: str, tables: dict) -> int:
    """Create the objects of ``tables`` that are missing; return how many were created."""
    relationships = {item["name"]: item["uuid"] for item in _call("GET", f"{url}/relationships")}
    created = 0
    for table in [name for name in ORDER if name in tables] + [name for name in tables if name not in ORDER]:
        for item in tables[table]:
            item = dict(item)
            if item.get("relationship") in relationships:
                item["relationship"] = relationships[item["relationship"]]
            keys = {"_id": item["_id"]} if "_id" in item else item
            if _call("GET", f"{url}/{table}?{urllib.parse.urlencode(keys)}"):
                continue
            _call("PUT", f"{url}/{table}", [item])
            created += 1
    return created


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Load a facility's metadata into Pacifica metadata.")
    parser.add_argument("--url", default="http://metadata:8121", help="the metadata service")
    parser.add_argument("--wait", type=float, default=120, help="seconds to wait for it to answer")
    parser.add_argument("files", nargs="+", help="JSON files of {table: [objects]}")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    wait_for(url, args.wait)
    for name in args.files:
        with open(name, encoding="utf-8") as handle:
            count = load(url, json.load(handle))
        print(f"{name}: {count} objects created")
    return 0


if __name__ == "__main__":
    sys.exit(main())
