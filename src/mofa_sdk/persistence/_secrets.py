"""Provider API keys at rest: encrypted with Fernet when ``MOFA_SECRET_KEY`` is set, else stored as given.

``MOFA_SECRET_KEY`` is any passphrase (a Fernet key works too). Values written now look like
``enc:v2:<salt>:<Fernet token>``: the Fernet key is scrypt(passphrase, salt), so a stolen value costs an
attacker a 32 MiB, ~0.1 s scrypt per guess instead of one SHA-256. The older ``enc:v1:<token>`` values (the
passphrase used as a Fernet key, or hashed once with SHA-256) are still read, and become v2 when the row is
written again. A wrong key is a clear error, never garbage.

One random salt per process: every row shares the one passphrase, so cracking any row cracks them all and
a salt per row would buy nothing but a derivation per row; the salt is there so that a dictionary computed
for one database (or for mofa-sdk at large) is useless on another. Derived keys are cached per
(passphrase, salt), so a process derives once per salt it meets, not once per row.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import functools
import hashlib
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

__all__ = ["decrypt_key", "encrypt_key", "is_encrypted", "keys_left_encrypted"]

_V1 = "enc:v1:"
_V2 = "enc:v2:"
#: scrypt cost: n=2**15, r=8 uses 32 MiB and ~0.1 s per derivation here (docs/reliability.md has the
#: numbers); OWASP's floor for scrypt is n=2**17 at p=1 or an equal n*p, which would make every CLI
#: command that reads an encrypted key wait about half a second per salt
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SALT_BYTES = 16

_salt_lock = threading.Lock()
_process_salt: bytes | None = None


def _salt() -> bytes:
    global _process_salt
    with _salt_lock:
        if _process_salt is None:
            _process_salt = os.urandom(_SALT_BYTES)
        return _process_salt


@functools.lru_cache(maxsize=32)
def _derived(secret: str, salt: bytes) -> Fernet:
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    kdf = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(secret.encode("utf-8", "surrogatepass"))))


#: set inside ``keys_left_encrypted()``
_leave_encrypted: contextvars.ContextVar[bool] = contextvars.ContextVar("mofa_leave_encrypted", default=False)


@contextlib.contextmanager
def keys_left_encrypted() -> Iterator[None]:
    """Inside, an encrypted key read while MOFA_SECRET_KEY is unset is kept as its stored, encrypted value
    instead of failing: for listings, which only ever show keys masked, and for commands that only need a
    provider's id. A wrong MOFA_SECRET_KEY is still an error (it is worth knowing). Never use it for rows a
    request is built from."""
    token = _leave_encrypted.set(True)
    try:
        yield
    finally:
        _leave_encrypted.reset(token)


def is_encrypted(stored: str | None) -> bool:
    return stored is not None and stored.startswith((_V1, _V2))


def _v1_fernet(secret: str) -> Fernet:
    from cryptography.fernet import Fernet

    try:
        return Fernet(secret.encode())
    except ValueError:
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


def _secret(secret: str | None) -> str | None:
    return secret if secret is not None else os.environ.get("MOFA_SECRET_KEY")


def encrypt_key(plain: str | None, secret: str | None = None) -> str | None:
    """What to write in ``entity_provider.api_key``."""
    if plain is None:
        return None
    secret = _secret(secret)
    if not secret:
        return plain
    salt = _salt()
    token = _derived(secret, salt).encrypt(plain.encode()).decode()
    return f"{_V2}{base64.urlsafe_b64encode(salt).decode()}:{token}"


def decrypt_key(stored: str | None, secret: str | None = None, *, provider: str = "?") -> str | None:
    """The plain key from a stored value; ConfigError when it is encrypted and the secret is missing or wrong."""
    if stored is None or not stored.startswith((_V1, _V2)):
        return stored
    from cryptography.fernet import InvalidToken

    secret = _secret(secret)
    if not secret:
        if _leave_encrypted.get():
            return stored
        raise ConfigError(
            f"the API key of provider {provider!r} is encrypted; set MOFA_SECRET_KEY to read it"
        )
    if stored.startswith(_V1):
        fernet, token = _v1_fernet(secret), stored[len(_V1) :]
    else:
        salt_text, _, token = stored[len(_V2) :].partition(":")
        try:
            salt = base64.urlsafe_b64decode(salt_text.encode())
        except (binascii.Error, ValueError):
            salt = b""
        if len(salt) != _SALT_BYTES or not token:
            raise ConfigError(f"the stored API key of provider {provider!r} is damaged (bad enc:v2 value)")
        fernet = _derived(secret, salt)
    try:
        return fernet.decrypt(token.encode()).decode()
    except InvalidToken:
        raise ConfigError(
            f"MOFA_SECRET_KEY cannot decrypt the API key of provider {provider!r} (wrong key?)"
        ) from None
