"""``mofa sessions list|show|export|delete|rename``, and the session renderers ``mofa chat`` reuses."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..entities import Message, Session
from ..errors import ConfigError, NotFoundError, ValidationError
from ..ids import parse_uuid
from ..llm import SessionInfo
from ..persistence import Cursor, SessionFinder, SessionLister, owned_session
from ._common import (
    DbOpt,
    TenantOpt,
    UserOpt,
    console,
    err_console,
    flag,
    open_store,
    resolve_tenant,
    resolve_user,
    run,
    short_time,
)

__all__ = [
    "make_title",
    "render_transcript",
    "resolve_session",
    "sessions_app",
    "sessions_table",
    "short_id",
]

sessions_app = typer.Typer(help="List, show, export, rename and delete chat sessions.", no_args_is_help=True)

#: how a reply that did not finish is marked in transcripts
_MARKS = {
    "cancelled": "cancelled",
    "interrupted": "interrupted",
    "error": "error",
    "streaming": "streaming…",
}
_TITLE_LEN = 60
_ID_HELP = "Session id: the UUID, its start, or the short id lists show."


def make_title(text: str) -> str:
    """A session title from a user message: its first line, shortened."""
    line = " ".join(text.split())
    return line if len(line) <= _TITLE_LEN else line[: _TITLE_LEN - 1].rstrip() + "…"


#: how many hex digits of an id's random end lists show (32 random bits: a clash among one user's
#: sessions is about 1 in 4 billion per pair; a clash in one list shows more digits)
SHORT_ID = 8


def short_id(session_id: uuid.UUID) -> str:
    """The short id lists show: the end of the id, not its start. Ids are uuid7, whose first 12 hex
    digits are the creation time, so sessions of one day share their first 6 to 8 digits, while the
    last 12 are random."""
    return str(session_id)[-SHORT_ID:]


def _short_ids(ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Short ids unique among ``ids``: the last 8 hex digits, more where two would be equal."""
    for n in range(SHORT_ID, 13):
        tails = {i: str(i)[-n:] for i in ids}
        if len(set(tails.values())) == len(tails):
            return tails
    return {i: str(i) for i in ids}


async def resolve_session(store: SessionFinder, tenant: uuid.UUID, user: uuid.UUID, ref: str) -> Session:
    """The session of this tenant and user that ``ref`` names: a whole id, the start of one, or the end
    of one (the short id lists show). Several matches: a ConfigError listing them. The one lookup of
    every command that takes a session id (the store's tenant-scoped ``find_sessions_by_id``)."""
    text = ref.strip()
    try:
        sid: uuid.UUID | None = parse_uuid(text, "session id") if len(text) >= 32 else None
    except ConfigError:
        sid = None
    if sid is not None:
        session = await owned_session(store, tenant, user, sid)
        if session is None:
            raise NotFoundError(
                f"unknown session {sid} (tenant {tenant}, user {user}); see `mofa sessions list`"
            )
        return session
    try:
        found = await store.find_sessions_by_id(tenant, user, text, limit=6)
    except ValidationError:
        raise ConfigError(
            f"{ref!r} is not a session id: give a UUID, its first digits or the short id `mofa sessions list` "
            "shows (at least 4 hex digits)"
        ) from None
    if not found:
        raise NotFoundError(
            f"no session id starts or ends with {text!r} (tenant {tenant}, user {user}); see `mofa sessions list`"
        )
    if len(found) > 1:
        shown = ", ".join(f"{s.id} ({s.title or 'untitled'})" for s in found[:5])
        more = " and more" if len(found) > 5 else ""
        raise ConfigError(f"{text!r} matches several sessions: {shown}{more}; give more digits")
    return found[0]


async def _title_of(store: SessionLister, session: SessionInfo) -> tuple[str, bool]:
    """The session's title, or one made from its first user message (second item False then)."""
    if session.title:
        return session.title, True
    first = await store.get_session_messages_paginated(session.tenant_id, session.id, 0, 4)
    for m in first:
        if m.role == "user":
            return make_title(m.content), False
    return "(empty)", False


async def sessions_table(
    store: SessionLister, sessions: Sequence[SessionInfo], *, current: uuid.UUID | None = None
) -> Table:
    """A table of sessions: id, title, agent, messages, last activity."""
    table = Table(box=None, pad_edge=False, header_style="bold underline")
    table.add_column("id", no_wrap=True)
    # on a terminal the title is the one column that wraps, so narrow terminals keep the id and the counts
    # visible; piped, each session is one line (the title cut short) for grep and friends
    piped = not console.is_terminal
    table.add_column("title", overflow="ellipsis" if piped else "fold", no_wrap=piped, max_width=40)
    table.add_column("agent", overflow="ellipsis", no_wrap=True, max_width=20)
    table.add_column("msgs", justify="right", no_wrap=True)
    table.add_column("last activity", no_wrap=True)
    codes: dict[uuid.UUID, str] = {}
    if sessions:
        codes = {a.id: a.agent_code for a in await store.list_agents(sessions[0].tenant_id)}
    shorts = _short_ids([s.id for s in sessions])
    for s in sessions:
        title, explicit = await _title_of(store, s)
        count = await store.count_session_messages(s.tenant_id, s.id)
        agent = codes.get(s.agent_id, "-") if s.agent_id is not None else "-"
        sid = Text(shorts[s.id], style="bold" if s.id == current else "")
        if s.id == current:
            sid.append(" *")
        title_cell = Text(title, style="" if explicit else "italic")
        table.add_row(sid, title_cell, agent, str(count), short_time(s.update_time, seconds=False))
    return table


#: how much of a tool's arguments or result, or of a data URL, a transcript on the terminal shows
_CLIP = 300


def _clip(text: str, limit: int = _CLIP) -> str:
    flat = " ".join(text.split()) if "\n" in text else text
    return flat if len(flat) <= limit else f"{flat[:limit]}… ({len(flat) - limit:,} more characters)"


def _call_names(messages: Sequence[Message]) -> dict[str, str]:
    """Each tool call id of ``messages`` with its tool's name (a tool row names only the call)."""
    return {c.id: c.name for m in messages for c in m.tool_calls}


def _image_label(url: str, limit: int = 60) -> str:
    if url.startswith("data:"):  # a data URL is the image itself: its type and size say enough here
        kind = url[5:].split(";", 1)[0].split(",", 1)[0] or "data"
        return f"{kind} data URL, {len(url):,} characters"
    return _clip(url, limit)


def render_transcript(messages: Sequence[Message], out: Console = console) -> None:
    """Print messages with their role and, for a reply that did not finish, a visible mark. Tool calls
    (name and arguments) and tool results (with an error mark) are shown compact and dim."""
    if not messages:
        out.print("(no messages)", style="dim")
    names = _call_names(messages)
    for m in messages:
        head = Text(f"{m.role}", style={"user": "bold green", "assistant": "bold cyan"}.get(m.role, "bold"))
        head.append(f"  #{m.seq}  {short_time(m.create_time)}", style="dim")
        mark = _MARKS.get(m.status)
        if mark:
            head.append(f"  [{mark}]", style="bold yellow" if m.status != "error" else "bold red")
        if m.role == "tool":
            call = m.tool_call_id or "?"
            head.append(f"  {names.get(call, 'tool')} · {call}", style="dim")
            if m.is_error and m.status != "error":
                head.append("  [error]", style="bold red")
        out.print(head)
        if m.role == "tool":
            out.print(Text(_clip(m.content), style="dim"), soft_wrap=True)
        elif m.content or not m.tool_calls:
            out.print(Text(m.content), soft_wrap=True)
        for part in m.parts:
            if part.type == "image":
                out.print(Text(f"[image: {_image_label(part.url or '')}]", style="dim"), soft_wrap=True)
        for c in m.tool_calls:
            out.print(Text(f"→ {c.name}({_clip(c.arguments)})  ", style="dim").append(c.id, style="dim italic"),
                      soft_wrap=True)  # fmt: skip
        out.print()


def _system_prompt(session: Session) -> str | None:
    """The system prompt the session runs with (recorded in its settings), if any."""
    prompt = session.settings.system_prompt if session.settings is not None else None
    return prompt or None


def _message_json(m: Message) -> dict[str, Any]:
    """A message for the JSON export: its fields, and its tool fields where it has them."""
    out = m.model_dump(
        mode="json",
        include={"id", "seq", "role", "content", "status", "metadata", "parent_message_id", "create_time",
                 "update_time"},
    )  # fmt: skip
    if m.tool_calls:
        out["tool_calls"] = [c.model_dump(mode="json") for c in m.tool_calls]
    if m.role == "tool":
        out["tool_call_id"], out["is_error"] = m.tool_call_id, m.is_error
    if m.parts:
        out["parts"] = [p.model_dump(mode="json") for p in m.parts]
    return out


def _session_json(session: Session, messages: Sequence[Message]) -> dict[str, Any]:
    return {
        "session": session.model_dump(mode="json"),
        "system_prompt": _system_prompt(session),
        "messages": [_message_json(m) for m in messages],
    }


def _code(text: str) -> str:
    """``text`` as Markdown inline code, whatever backticks it holds: fenced by one more backtick than its
    longest run, padded with a space where it starts or ends with one."""
    longest = current = 0
    for ch in text:
        current = current + 1 if ch == "`" else 0
        longest = max(longest, current)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _session_markdown(session: Session, title: str, messages: Sequence[Message]) -> str:
    lines = [
        f"# {title}",
        "",
        f"- session: `{session.id}`",
        f"- created: {short_time(session.create_time)}",
        f"- messages: {len(messages)}",
        "",
    ]
    system = _system_prompt(session)
    if system is not None:
        lines += ["## System", "", system, ""]
    names = _call_names(messages)
    for m in messages:
        marks = [_MARKS[m.status]] if m.status in _MARKS else []
        if m.is_error and m.status != "error":
            marks.append("error")
        mark = "".join(f" _({k})_" for k in marks)
        heading = m.role.capitalize()
        if m.role == "tool":
            call = m.tool_call_id or "?"
            heading = f"Tool result · {_code(names.get(call, 'tool'))} · {_code(call)}"
        lines += [f"## {heading}{mark}", "", f"<sub>{short_time(m.create_time)}</sub>", ""]
        if m.content or not m.tool_calls:
            lines += [m.content, ""]
        images = [p.url or "" for p in m.parts if p.type == "image"]
        lines += [f"![image {i}]({url})" for i, url in enumerate(images, 1)] + ([""] if images else [])
        calls = [f"- tool call {_code(c.name)} · {_code(c.id)}: {_code(c.arguments)}" for c in m.tool_calls]
        lines += calls + ([""] if calls else [])
    return "\n".join(lines)


# -- commands ---------------------------------------------------------------------------------------
@sessions_app.command("list")
def list_(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many sessions.")] = 20,
    after: Annotated[
        str | None,
        typer.Option("--after", metavar="CURSOR", show_default=False,
                     help="The next page: the cursor the previous page printed."),
    ] = None,
    as_json: Annotated[bool, flag("--json", help="Print JSON instead of a table.")] = False,
    db: DbOpt = None,
    tenant: TenantOpt = None,
    user: UserOpt = None,
) -> None:
    """The user's sessions, most recently active first, a page at a time (the next page's command is
    printed on stderr; every page costs what the first does)."""

    async def go() -> None:
        tid, uid = resolve_tenant(tenant), resolve_user(user)
        cursor = None if after is None else Cursor.parse(after.strip())
        async with open_store(db, read_only=True) as store:
            page = await store.list_user_sessions(tid, uid, after=cursor, limit=limit)
            sessions = page.items
            if page.next is not None:
                err_console.print(
                    Text(f"more: mofa sessions list --limit {limit} --after {page.next.token()}", style="dim"),
                    soft_wrap=True,
                )
            if as_json:
                rows = []
                for s in sessions:
                    title, _ = await _title_of(store, s)
                    rows.append(
                        {
                            **s.model_dump(mode="json"),
                            "display_title": title,
                            "messages": await store.count_session_messages(tid, s.id),
                        }
                    )
                typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
                return
            if not sessions:
                console.print("no sessions yet: start one with `mofa chat`", style="dim")
                return
            console.print(await sessions_table(store, sessions))

    run(go())


def _snippet(content: str, words: Sequence[str], width: int = 90) -> str:
    """The part of ``content`` around the first word searched for, on one line."""
    flat = " ".join(content.split())
    lower = flat.casefold()
    at = min((i for i in (lower.find(w) for w in words) if i >= 0), default=0)
    start = max(0, at - width // 3)
    piece = flat[start : start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(flat) else "")


@sessions_app.command("search")
def search(
    text: Annotated[str, typer.Argument(help="Words to find (all of them, whole words, any case).",
                                        show_default=False)],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many messages.")] = 20,
    db: DbOpt = None,
    tenant: TenantOpt = None,
    user: UserOpt = None,
) -> None:
    """Find messages of your sessions by their words (full-text: FTS5 on SQLite, tsvector on PostgreSQL)."""

    async def go() -> None:
        from ..persistence import search_words

        tid, uid = resolve_tenant(tenant), resolve_user(user)
        words = search_words(text)
        async with open_store(db, read_only=True) as store:
            found = await store.search_messages(tid, uid, text, limit=limit)
            if not found:
                console.print(f"no message holds {' '.join(words)!r}", style="dim")
                return
            sessions = {m.session_id: await store.get_session(tid, m.session_id) for m in found}
            shorts = _short_ids(list(sessions))
            table = Table(box=None, pad_edge=False, header_style="bold underline")
            table.add_column("session", no_wrap=True)
            table.add_column("title", overflow="ellipsis", no_wrap=True, max_width=30)
            table.add_column("role", no_wrap=True)
            table.add_column("when", no_wrap=True)
            table.add_column("match", overflow="fold")
            for m in found:
                session = sessions[m.session_id]
                title = (await _title_of(store, session))[0] if session is not None else "-"
                table.add_row(shorts[m.session_id], title, m.role, short_time(m.create_time, seconds=False),
                              Text(_snippet(m.content, words)))
        console.print(table)

    run(go())


@sessions_app.command("show")
def show(
    session_id: Annotated[str, typer.Argument(help=_ID_HELP, show_default=False)],
    db: DbOpt = None,
    tenant: TenantOpt = None,
    user: UserOpt = None,
) -> None:
    """The transcript of a session; replies that did not finish are marked."""

    async def go() -> None:
        async with open_store(db, read_only=True) as store:
            session = await resolve_session(store, resolve_tenant(tenant), resolve_user(user), session_id)
            title, _ = await _title_of(store, session)
            messages = await store.get_session_messages(session.tenant_id, session.id)
            console.print(Text(title, style="bold"))
            console.print(
                f"session {session.id} · {len(messages)} messages · "
                f"last activity {short_time(session.update_time)}",
                style="dim",
            )
            system = _system_prompt(session)
            if system is not None:
                console.print(Text("system  ", style="bold").append(system, style=""), soft_wrap=True)
            console.print()
            render_transcript(messages)

    run(go())


@sessions_app.command("export")
def export(
    session_id: Annotated[str, typer.Argument(help=_ID_HELP, show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="json or markdown (md).")] = "json",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    db: DbOpt = None,
    tenant: TenantOpt = None,
    user: UserOpt = None,
) -> None:
    """Export a session as JSON or Markdown."""

    async def go() -> None:
        kind = fmt.lower()
        if kind not in ("json", "markdown", "md"):
            raise ConfigError(f"--format must be json or markdown, got {fmt!r}")
        async with open_store(db, read_only=True) as store:
            session = await resolve_session(store, resolve_tenant(tenant), resolve_user(user), session_id)
            messages = await store.get_session_messages(session.tenant_id, session.id)
            if kind == "json":
                text = json.dumps(_session_json(session, messages), ensure_ascii=False, indent=2)
            else:
                title, _ = await _title_of(store, session)
                text = _session_markdown(session, title, messages)
        if output is None:
            typer.echo(text)
        else:
            output.write_text(text + "\n", encoding="utf-8")
            console.print(f"wrote {len(messages)} messages to {output}")

    run(go())


@sessions_app.command("delete")
def delete(
    session_id: Annotated[str, typer.Argument(help=_ID_HELP, show_default=False)],
    yes: Annotated[bool, flag("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOpt = None,
    tenant: TenantOpt = None,
    user: UserOpt = None,
) -> None:
    """Delete a session with its messages and LLM call records."""

    async def go() -> None:
        async with open_store(db) as store:
            session = await resolve_session(store, resolve_tenant(tenant), resolve_user(user), session_id)
            count = await store.count_session_messages(session.tenant_id, session.id)
            if not yes:
                try:
                    confirmed = typer.confirm(f"delete session {session.id} and its {count} messages?")
                except typer.Abort:  # no answer: stdin is closed or not a terminal (a script, a pipe)
                    raise ConfigError(
                        f"not deleted: deleting session {session.id} needs a confirmation and none could be read "
                        "(no terminal?); pass --yes to delete without asking"
                    ) from None
                if not confirmed:
                    console.print("nothing deleted")
                    return
            await store.delete_session(session.tenant_id, session.id)
            console.print(f"deleted session {session.id} ({count} messages)")

    run(go())


@sessions_app.command("rename")
def rename(
    session_id: Annotated[str, typer.Argument(help=_ID_HELP, show_default=False)],
    title: Annotated[str, typer.Argument(help="The new title (empty: clear it).", show_default=False)],
    db: DbOpt = None,
    tenant: TenantOpt = None,
    user: UserOpt = None,
) -> None:
    """Set a session's title."""

    async def go() -> None:
        async with open_store(db) as store:
            session = await resolve_session(store, resolve_tenant(tenant), resolve_user(user), session_id)
            new = title.strip() or None
            await store.update_session(session.tenant_id, session.id, title=new)
            console.print(
                f"session {session.id} is now titled {new!r}" if new else f"cleared the title of {session.id}"
            )

    run(go())
