"""The contract's fixtures, defined in tests/support/stores.py and re-exported here for this package."""

from tests.support.stores import contract_pgbouncer, local_store, store

__all__ = ["contract_pgbouncer", "local_store", "store"]
