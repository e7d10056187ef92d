"""The store contract, one module per aggregate: every test runs on InMemoryStore, SqliteStore and PostgresStore.

Tests isolate themselves with fresh tenant and user ids (the PostgreSQL schema is shared by the run).
"""
