"""``mofa serve --open``: the web chat page opened in the user's browser once the service answers."""

from __future__ import annotations

import threading
import time
import urllib.request
import webbrowser

from ._common import err_console

__all__ = ["open_when_up"]


def open_when_up(host: str, port: int) -> None:
    """Starts a daemon thread that opens ``http://host:port/`` once ``/healthz`` answers."""
    page = f"http://{_browsable(host)}:{port}/"
    threading.Thread(target=_open_when_up, args=(page,), name="mofa-open", daemon=True).start()


def _browsable(host: str) -> str:
    """The address a browser on this machine reaches a server listening on ``host`` at."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _open_when_up(page: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(page + "healthz", timeout=2):
                break
        except OSError:  # not listening yet, or 503 while the database connects
            time.sleep(0.2)
    else:
        err_console.print(f"the service did not answer in {timeout:.0f} s; open {page} yourself")
        return
    if not webbrowser.open(page):
        err_console.print(f"no browser could be opened; the page is at {page}")
