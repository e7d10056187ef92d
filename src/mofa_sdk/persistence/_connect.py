async def connect_store(url: str | None = None) -> object:  # placeholder
    raise NotImplementedError
