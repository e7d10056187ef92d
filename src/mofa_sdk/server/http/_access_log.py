"""The access log without secrets: a key, token or password sent in a query string is never written.

The service reads keys only from ``Authorization``; a client that puts one in the URL anyway (``?api_key=``)
must not find it in the server's logs. uvicorn's access log line holds the path with its query string: this
filter masks the values of the query parameters whose names look like credentials.
"""

from __future__ import annotations

import logging
import re

__all__ = ["ACCESS_LOGGER", "QuerySecretsFilter", "install_access_log_filter", "mask_query"]

ACCESS_LOGGER = "uvicorn.access"

#: a query parameter whose name holds one of these words has its value masked
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:[^=&;#]*(?:key|token|secret|password|passwd|auth|credential|signature)[^=&;#]*)=)"
    r"[^&;#]*"
)


def mask_query(target: str) -> str:
    """``target`` (a path with its query) with credential-like query values replaced by ``***``."""
    return _SECRET_PARAM.sub(r"\1***", target) if "?" in target else target


class QuerySecretsFilter(logging.Filter):
    """Masks credential-like query values in every string argument of an access log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(mask_query(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_access_log_filter() -> None:
    """Add the filter to uvicorn's access logger (once per process)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, QuerySecretsFilter) for f in logger.filters):
        logger.addFilter(QuerySecretsFilter())
