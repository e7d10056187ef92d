"""The one redactor: what a person may see of URLs, keys and third-party errors.

Every message, repr, CLI line and stored error text that can hold a database URL, a provider's ``api_base``
or a provider's error goes through here. URLs are redacted by their shape, never by parsing alone: a URL no
parser accepts (a bad port, a stray ``[``, a raw ``?`` in a password) must still not show its secret.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote, unquote_plus

from .errors import MofaError

__all__ = [
    "REDACTED",
    "ScrubbedCause",
    "is_secret_name",
    "mask_key",
    "redact_logs",
    "redact_text",
    "redact_url",
    "scrub_chain",
    "upstream_names",
    "url_secrets",
]

REDACTED = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
#: a URL inside free text ends at whitespace, a quote or an angle bracket, and not on the punctuation of
#: the sentence around it ("at http://h/v1: …")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]*[^\s'\"<>`.,:;!?)\]]")
#: a query parameter whose (lower-cased, decoded) name contains one of these holds a secret: password,
#: passwd, sslpassword, pwd, client_secret, access_token, api_key, apikey, x-api-key, sig, signature,
#: auth, X-Amz-Credential … Naming a harmless parameter (sslkey's file path) costs only readability.
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "sig", "auth", "credential")
#: schemes whose user name is a role name worth showing; elsewhere (http…) a lone user name is often a token
_DB_SCHEMES = ("postgres", "postgresql", "sqlite", "mysql", "mariadb", "redis", "mongodb")
#: an authority that is a plain host (a name or a bracketed IPv6 address) with an optional numeric port
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.%]*\]|[^:@\[\]]*)(:\d*)?")


def is_secret_name(name: str) -> bool:
    """True for a parameter name that suggests a secret value (case-insensitive, percent-decoded)."""
    plain = unquote_plus(name).lower()
    return any(word in plain for word in _SECRET_WORDS)


def _split(url: str) -> tuple[str, str | None, str]:
    """``(head, userinfo, after)``: the scheme with its ``://`` (or ""), the user-info (None when there is
    none) and everything after the user-info's ``@``. Follows libpq as well as urlsplit: the authority ends at
    the first ``/`` (a raw ``?`` or ``#`` may sit in a password) and the user-info at its last ``@``."""
    m = _SCHEME.match(url)
    head = m.group(0) if m else ""
    rest = url[len(head) :]
    slash = rest.find("/")
    authority = rest if slash < 0 else rest[:slash]
    at = authority.rfind("@")
    if at < 0:
        # "user:pa/ss@host": a raw "/" in the password ends the authority early; a "port" that is no
        # number with an "@" further on means the part before the last "@" is user-info all the same
        # (in a URL this broken, hiding too much is the safe mistake)
        at = rest.rfind("@")
        if at < 0 or _HOST_PORT.fullmatch(authority):
            return head, None, rest
    return head, rest[:at], rest[at:]


def _redact_params(part: str) -> str:
    pieces = re.split(r"([&;])", part)
    for i, piece in enumerate(pieces):
        name, eq, value = piece.partition("=")
        if eq and value and is_secret_name(name):
            pieces[i] = f"{name}={REDACTED}"
    return "".join(pieces)


def _redact_tail(after: str) -> str:
    """Secret-named parameters of the query and of a ``k=v`` fragment (``#access_token=…``)."""
    q = after.find("?")
    h = after.find("#")
    if q < 0 and h < 0:
        return after
    if q >= 0 and (h < 0 or q < h):
        base, query = after[:q], after[q:]
        query_part, hash_, fragment = query.partition("#")
        return base + _redact_params(query_part) + hash_ + _redact_params(fragment)
    return after[:h] + "#" + _redact_params(after[h + 1 :])


def redact_url(url: str) -> str:
    """``url`` with the user-info password and secret-named query parameters replaced by ``***``.

    Never raises and never needs a valid URL: ``postgresql://u:p%40ss@h:notaport/db?password=x`` becomes
    ``postgresql://u:***@h:notaport/db?password=***``. A user name alone is kept for database schemes
    (it names a role) and redacted elsewhere (``https://TOKEN@host``)."""
    head, userinfo, after = _split(url)
    if userinfo is not None:
        user, colon, password = userinfo.partition(":")
        scheme = head[:-3].lower().split("+")[0]
        if colon:
            userinfo = f"{user}:{REDACTED}" if password else f"{user}:"
        elif user and head and scheme not in _DB_SCHEMES:
            userinfo = REDACTED
        return head + userinfo + _redact_tail(after)
    return head + _redact_tail(after)


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The secret values in ``url`` as written and percent-decoded: what :func:`redact_text` must also
    replace when a library echoes them outside the URL (``password authentication failed for p@ss``)."""
    if not url:
        return ()
    head, userinfo, after = _split(url)
    found: list[str] = []
    if userinfo is not None:
        user, colon, password = userinfo.partition(":")
        scheme = head[:-3].lower().split("+")[0]
        if colon:
            # "u:p@ss@h": urlsplit reads the password up to the last "@", libpq up to the first
            found += [password, password.partition("@")[0]]
        elif head and scheme not in _DB_SCHEMES:
            found.append(user)
    for piece in re.split(r"[&;?#]", after):
        name, eq, value = piece.partition("=")
        if eq and is_secret_name(name):
            found.append(value)
    out: list[str] = []
    for value in found:
        for form in (value, unquote(value), unquote_plus(value)):
            if form and form not in out:
                out.append(form)
    return tuple(out)


def upstream_names(url: str | None) -> tuple[str, ...]:
    """Where an upstream lives, as text may show it: its base URL (as written and without a trailing ``/``),
    its ``host:port`` and its host name. A service hides these like secrets, so no client learns an internal
    address from a provider's error (httpx names the URL it failed on; a proxy's error page echoes it)."""
    if not url:
        return ()
    _, _, after = _split(url.strip())
    authority = re.split(r"[/?#]", after.lstrip("@"), maxsplit=1)[0]
    host = authority
    if m := _HOST_PORT.fullmatch(authority):
        host = m.group(1).strip("[]")
    names = [url.strip(), url.strip().rstrip("/"), authority, host]
    return tuple(dict.fromkeys(n for n in names if n))


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with each of ``secrets`` (a key, a password) replaced, then every URL in it redacted.

    Secrets go first: a URL cut short in prose (at a quote, a space) could otherwise split one. A secret
    of under 4 characters is replaced only where it stands alone, not inside every word that holds it."""
    out = text
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= 4:
            out = out.replace(secret, REDACTED)
        else:
            out = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", REDACTED, out)
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), out)


def mask_key(key: str | None) -> str:
    """A key as lists may show it: at most a known prefix and its last 4 characters."""
    if not key:
        return "-"
    if len(key) < 12:  # too short to reveal anything of
        return "••••"
    prefix = "sk-" if key.startswith("sk-") else ""
    return f"{prefix}…{key[-4:]}"


class ScrubbedCause(MofaError):
    """Stands in, as ``__cause__``, for third-party exceptions whose text or attributes (a request URL, an
    echoed key) may hold a secret: their classes and redacted messages, nothing else. Never raised."""


def _describe(exc: BaseException, secrets: Iterable[str | None]) -> str:
    kind = type(exc)
    try:
        text = str(exc)
    except Exception:  # an exception whose __str__ fails still has a class worth naming
        text = ""
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"{name}: {redact_text(text, secrets)}" if text else name


def scrub_chain(err: BaseException, secrets: Iterable[str | None] = ()) -> BaseException:
    """Replace ``err``'s ``__cause__``/``__context__`` chain by one :class:`ScrubbedCause` naming each
    exception of it (class and redacted message), so a traceback keeps what helps and shows no secret.
    Returns ``err``; call it where ``err`` is re-raised with a bare ``raise`` (which keeps the chain)."""
    secrets = tuple(secrets)
    seen = {id(err)}
    parts: list[str] = []
    current = err.__cause__ or err.__context__
    while current is not None and id(current) not in seen and len(parts) < 8:
        seen.add(id(current))
        parts.append(_describe(current, secrets))
        current = current.__cause__ or current.__context__
    err.__cause__ = ScrubbedCause(" <- ".join(parts)) if parts else None
    err.__context__ = None
    err.__suppress_context__ = True
    return err


#: a URL's scheme and authority (user-info, host, port): what a log of upstream requests hides
_AUTHORITY = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/\s'\"<>`]+")


#: how httpcore's connection trace names the host it connects to (at DEBUG): ``host='10.0.0.5'``
_HOST_FIELD = re.compile(r"""(\bhost=)(?:'[^']*'|"[^"]*"|[^\s,)]+)""")


def _hide_hosts(text: str) -> str:
    return _HOST_FIELD.sub(lambda m: m.group(1) + repr(REDACTED), _AUTHORITY.sub(lambda m: m.group(1) + REDACTED, text))


class _RedactingFilter(logging.Filter):
    """Redacts the URLs in a record's message: httpx logs every request's full URL at INFO. With
    ``hide_hosts`` every URL's authority is hidden as well (an upstream's internal address)."""

    def __init__(self, hide_hosts: bool = False) -> None:
        super().__init__()
        self.hide_hosts = hide_hosts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if self.hide_hosts:
            redacted = _hide_hosts(redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_logs(*names: str, hide_hosts: bool = False) -> None:
    """Make the loggers ``names`` (a third-party library's own, records are filtered where they are made)
    redact URLs, with ``hide_hosts`` down to ``scheme://***/path``; idempotent."""
    for name in names:
        logger = logging.getLogger(name)
        found = [f for f in logger.filters if isinstance(f, _RedactingFilter)]
        if found:
            found[0].hide_hosts = found[0].hide_hosts or hide_hosts
        else:
            logger.addFilter(_RedactingFilter(hide_hosts))
