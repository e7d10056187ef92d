"""A served app with a scripted provider, for tests and benchmarks: ``python -m tests.server._app --db URL --port P``.

``mofa serve`` itself is started by the tests that need the real provider choice (OPENAI_* env, agent rows);
this one makes runs deterministic, and lets one server play every test's script (``support.ByContent``).
"""

from __future__ import annotations

import argparse

import uvicorn

from mofa_sdk.server import ServeConfig, create_app
from mofa_sdk.server.http._protocol import GuardedH11Protocol
from tests.server.support import ByContent, reply_of, stamps

__all__ = ["main", "reply_of", "stamps"]  # the benchmark imports the last two from here


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--words", type=int, default=30)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--keepalive", type=float, default=15.0)
    p.add_argument("--checkpoint", type=float, default=1.0)
    p.add_argument("--lease", type=float, default=5.0)
    p.add_argument("--rls", action="store_true")
    p.add_argument("--grace", type=float, default=10.0)
    p.add_argument("--header-timeout", type=float, default=10.0)
    p.add_argument("--max-connections", type=int, default=1000)
    a = p.parse_args()
    config = ServeConfig(database_url=a.db, keepalive_seconds=a.keepalive, checkpoint_interval=a.checkpoint,
                         heartbeat_seconds=0.5, owner_timeout_seconds=2.0, probe_seconds=1.0,
                         streaming_lease_seconds=a.lease, row_level_security=a.rls,
                         shutdown_grace_seconds=a.grace, header_timeout_seconds=a.header_timeout,
                         max_connections=a.max_connections,
                         max_reply_chars=None)  # some runs stream 10 MB on purpose
    app = create_app(config, provider=ByContent(a.words, a.delay))
    GuardedH11Protocol.configure(config)
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", http=GuardedH11Protocol)


if __name__ == "__main__":
    main()
