"""What the tests share, one module per concept. Tests import from here, never from another test module or a
conftest (tests/test_layout.py checks it); fixtures reach a test directory through its conftest (a re-export:
tests/conftest.py for the whole suite, tests/persistence/contract/conftest.py for the contract's own).

- ``postgres``: the shared server's schemas (``pg_url``, ``fresh_pg_url``), ``need_postgres``, ``IN_CI``
- ``stores``: ``store`` (each store), ``db_store``/``db_url`` (the two databases), the contract's stores
- ``builders``: valid entities for store tests
- ``rows``: an agent wired to a store, and checks that its rows hang together
- ``recorder``: an event handler recording every hook call
- ``fault_server``: a scripted, fault-injecting OpenAI-compatible server (``fault``)
- ``llama_server``: the real llama.cpp server behind a recording proxy (``llama_server``)
- ``cli``: the ``mofa`` app run in a worker thread (``Cli``)
- ``roles``: PostgreSQL roles and a schema secured by row-level security
- ``pg_cluster``, ``pgbouncer``, ``ports``: throwaway clusters, a pooler, free ports
"""
