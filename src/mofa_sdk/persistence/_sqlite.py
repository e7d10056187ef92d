from ._store import Store


class SqliteStore(Store):  # placeholder until the real module lands
    pass
