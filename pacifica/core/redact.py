"""What a client may be shown of a server's own words: no credentials, no server paths.

``redact_url`` drops the ``user:password@`` of a URL; ``public_text`` does that for every URL in
a text and replaces the service's own directories (registered by the composition root with
``hide_paths``) by a placeholder, so that an exception recorded for a job can be answered as it
is. The log keeps the details, less the credentials (``logs.formatter``).
"""

from __future__ import annotations

import re
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


def summarise(problems: list[str], separator: str = "; ") -> str:
    """The first ``LISTED`` problems, each clipped to 300 characters, and ``and N more``."""
    shown = separator.join(str(problem)[:300] for problem in problems[:LISTED])
    return shown + (f"{separator}and {len(problems) - LISTED} more" if len(problems) > LISTED else "")
