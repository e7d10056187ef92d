from ._store import Store


class PostgresStore(Store):  # placeholder until the real module lands
    pass
