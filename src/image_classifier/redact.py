"""URIs with their secrets taken out, for every message, log line and HTTP body that shows one.

A model URI can carry a credential in its userinfo (``https://user:password@host/m.pt``) or in its query
string (a signed URL's ``?X-Goog-Signature=...``). :func:`redact` replaces both, wherever a URI appears in
a text, so that an error about the URI still says which host and path it was about.
"""

from __future__ import annotations

import logging
import re
from typing import Any

HIDDEN = "***"
# scheme://[userinfo@]host-and-path[?query]; the userinfo ends at the last @ before the path, and the query
# before punctuation that ends a sentence or a clause ("Cannot fetch URI: ...").
URI = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#@'\"]*(?:@[^\s/?#@'\"]*)*@)?"
    r"(?P<rest>[^\s?#'\"]*)(?P<query>\?[^\s#'\"]*?(?=[.,:;!)\]]*(?:[\s'\"#]|$)))?"
)


def _hide(match: re.Match[str]) -> str:
    userinfo = f"{HIDDEN}@" if match["userinfo"] else ""
    query = f"?{HIDDEN}" if match["query"] else ""
    return f"{match['scheme']}{userinfo}{match['rest']}{query}"


def redact(text: str) -> str:
    """``text`` with the userinfo and query string of every URI in it replaced by ``***``."""
    return URI.sub(_hide, text)


def install_log_redaction() -> None:
    """Redact every log record this process creates from now on, its message and its traceback alike,
    whichever logger and handler write it (a log record factory, installed once)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        message = record.getMessage()
        hidden = redact(message)
        if hidden != message:
            record.msg, record.args = hidden, None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
