"""Provider API keys at rest: encrypted with Fernet when ``MOFA_SECRET_KEY`` is set, else stored as given.

``MOFA_SECRET_KEY`` may be a Fernet key or any passphrase (hashed to one). Stored values carry a prefix
so a database can hold both kinds, and a wrong key is a clear error, never garbage.
"""

from __future__ import annotations

import base64
import hashlib
import os

from ..errors import ConfigError

__all__ = ["decrypt_key", "encrypt_key"]

_PREFIX = "enc:v1:"


def _fernet(secret: str) -> object:
    from cryptography.fernet import Fernet

    try:
        return Fernet(secret.encode())
    except ValueError:
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


def encrypt_key(plain: str | None, secret: str | None = None) -> str | None:
    """What to write in ``entity_provider.api_key``."""
    if plain is None:
        return None
    secret = secret if secret is not None else os.environ.get("MOFA_SECRET_KEY")
    if not secret:
        return plain
    return _PREFIX + str(_fernet(secret).encrypt(plain.encode()).decode())  # type: ignore[attr-defined]


def decrypt_key(stored: str | None, secret: str | None = None, *, provider: str = "?") -> str | None:
    """The plain key from a stored value; ConfigError when it is encrypted and the secret is missing or wrong."""
    if stored is None or not stored.startswith(_PREFIX):
        return stored
    from cryptography.fernet import InvalidToken

    secret = secret if secret is not None else os.environ.get("MOFA_SECRET_KEY")
    if not secret:
        raise ConfigError(
            f"the API key of provider {provider!r} is encrypted; set MOFA_SECRET_KEY to read it"
        )
    try:
        return str(_fernet(secret).decrypt(stored[len(_PREFIX) :].encode()).decode())  # type: ignore[attr-defined]
    except InvalidToken:
        raise ConfigError(
            f"MOFA_SECRET_KEY cannot decrypt the API key of provider {provider!r} (wrong key?)"
        ) from None
