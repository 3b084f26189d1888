"""What a client may be shown of a server's own words: no credentials, no server paths.

``redact_url`` drops the ``user:password@`` of a URL; ``public_text`` does that for every URL in
a text and replaces the service's own directories (registered by the composition root with
``hide_paths``) by a placeholder, so that an exception recorded for a job can be answered as it
is. The log keeps the details, less the credentials (``logs.formatter``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit, urlunsplit

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s?#]*)@")
_hidden: list[tuple[str, str]] = []
# A stored message a client reads is at most this long.
MESSAGE_LIMIT = 64 * 1024


def redact_url(url: str) -> str:
    """``url`` without its user and password (``scheme://***@host``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(r"\g<scheme>***@", url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit((parts.scheme, "***@" + parts.netloc.rsplit("@", 1)[1], parts.path, parts.query, parts.fragment))


def redact_credentials(text: str) -> str:
    """``text`` with the userinfo of every URL in it replaced by ``***``."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def hide_paths(*pairs: tuple[str, str]) -> None:
    """Register directories (path, placeholder) that clients are never shown, longest first."""
    for path, label in pairs:
        path = path.rstrip("/")
        if path and (path, label) not in _hidden:
            _hidden.append((path, label))
    _hidden.sort(key=lambda item: len(item[0]), reverse=True)


def public_text(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` as a client may read it: no credentials, no registered directory, at most ``limit``."""
    text = redact_credentials(str(text))
    for path, label in _hidden:
        text = text.replace(path, label)
    if len(text) > limit:
        text = text[: limit - 40] + f" ... ({len(text) - limit + 40} characters cut)"
    return text


# Problem lists name this many, then how many more: a hostile request can have 200,000 problems.
LISTED = 20


class Problems:
    """Problems as they are found: the first ``LISTED`` kept, every one counted, so that a
    document with a problem in each of its 300,000 objects costs a counter, not a list."""

    def __init__(self, problems: Iterable[str] = ()) -> None:
        self.kept: list[str] = []
        self.count = 0
        self.extend(problems)

    def add(self, problem: str) -> None:
        """Count ``problem``, keeping it if it is among the first ``LISTED``."""
        self.count += 1
        if len(self.kept) < LISTED:
            self.kept.append(str(problem)[:300])

    def extend(self, problems: Iterable[str]) -> None:
        """``add`` each of ``problems`` (another ``Problems`` brings its count along)."""
        if isinstance(problems, Problems):
            self.kept.extend(problems.kept[: LISTED - len(self.kept)])
            self.count += problems.count
            return
        for problem in problems:
            self.add(problem)

    def __len__(self) -> int:
        return self.count

    def listed(self) -> list[str]:
        """The problems kept, and ``and N more`` when there were more."""
        more = self.count - len(self.kept)
        return self.kept + ([f"and {more} more"] if more else [])


def summarise(problems: Sequence[str] | Problems, separator: str = "; ") -> str:
    """The first ``LISTED`` problems, each clipped to 300 characters, and ``and N more``."""
    if not isinstance(problems, Problems):
        counted = Problems(problems[:LISTED])
        counted.count = len(problems)
        problems = counted
    return separator.join(problems.listed())
