"""uvicorn's HTTP protocol with one change: a request it cannot parse (a malformed ``Content-Length``, a bad
request line) is answered in the service's JSON error shape, not with uvicorn's plain-text line. Such a
request never reaches the app, so this is the only place that can shape the answer. ``mofa serve`` passes
it to uvicorn as ``http="mofa_sdk.server._protocol:JsonErrorsProtocol"``."""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = ["JsonErrorsProtocol", "bad_request_bytes"]


def bad_request_bytes(detail: str) -> bytes:
    """The whole 400 response: the error object both APIs share (code, message, type, param)."""
    body = json.dumps({"error": {
        "code": "bad_request", "message": f"the HTTP request could not be parsed: {detail}",
        "type": "invalid_request_error", "param": None,
    }}).encode()
    head = ("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


def _send_400_response(self: Any, msg: str) -> None:
    # after a parse error the connection's state is unknown: the answer is written raw, then it is closed
    self.transport.write(bad_request_bytes(msg.rstrip(".") or "invalid request"))
    self.transport.close()


#: a subclass of the protocol uvicorn would pick (httptools when installed, else h11)
JsonErrorsProtocol: type = type("JsonErrorsProtocol", (AutoHTTPProtocol,), {
    "send_400_response": _send_400_response, "__module__": __name__,
})
