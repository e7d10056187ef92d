"""A served app with a scripted provider, for tests and benchmarks: ``python -m tests.server._app --db URL --port P``.

``mofa serve`` itself is started by the tests that need the real provider choice (OPENAI_* env, agent rows);
this one makes runs deterministic: every reply is ``--words`` words, one delta each, ``--delay`` apart.
"""

from __future__ import annotations

import argparse

import uvicorn

from mofa_sdk.llm import ScriptedProvider
from mofa_sdk.server import ServeConfig, create_app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--words", type=int, default=30)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--keepalive", type=float, default=15.0)
    p.add_argument("--checkpoint", type=float, default=0.2)
    p.add_argument("--lease", type=float, default=5.0)
    a = p.parse_args()
    reply = " ".join(f"w{i}" for i in range(a.words)) + " ✓ «fin»\n"
    provider = ScriptedProvider([reply], delta_delay=a.delay)
    config = ServeConfig(database_url=a.db, keepalive_seconds=a.keepalive, checkpoint_interval=a.checkpoint,
                         heartbeat_seconds=0.5, owner_timeout_seconds=2.0, probe_seconds=1.0,
                         streaming_lease_seconds=a.lease)
    uvicorn.run(create_app(config, provider=provider), host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
