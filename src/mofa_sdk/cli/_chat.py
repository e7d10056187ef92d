"""``mofa chat``: an interactive streaming chat whose every turn is saved.

The prompt is read synchronously between turns, outside the event loop (an ``asyncio.Runner`` keeps one
loop, and the store's connections, for the whole chat): so Ctrl-C and Ctrl-D at the prompt are plain
``KeyboardInterrupt`` / ``EOFError``. While a reply streams, SIGINT is routed to the reply's task only:
cancelling it makes the persistence plugin save the partial reply as ``cancelled``, and the chat goes on.

A reply that could not be saved (the database went away) stays in the plugin's ``pending`` and is written
before the next turn and at exit; at exit the chat waits at most ``MOFA_FLUSH_TIMEOUT`` seconds (default 5)
for that, and says in one line what is lost if it could not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TextIO

import typer
from rich.status import Status
from rich.table import Table
from rich.text import Text

from ..entities import Session
from ..errors import (
    ConfigError,
    MofaError,
    NotFoundError,
    PersistenceError,
    ProviderError,
    UnsavedReplyError,
)
from ..llm import LOCAL_MAX_TOKENS, ChatStream, LLMAgent, LLMProvider, StepFinished, TextDelta, Tool, ToolResultEvent
from ..persistence import (
    KEEP,
    PendingReply,
    PersistencePlugin,
    SettingsRequest,
    Store,
    TurnEngine,
    TurnOptions,
    TurnSession,
    connect_store,
)
from ._common import (
    DbOpt,
    TenantOpt,
    UserOpt,
    console,
    err_console,
    flag,
    resolve_tenant,
    resolve_user,
    user_errors,
)
from ._functions import call_line, load_functions, result_line
from ._sessions import make_title, render_transcript, resolve_session, sessions_table, short_id

__all__ = ["chat"]

PROMPT = "you> "
MORE = "...> "
HELP = """\
/new            start a new session
/sessions       list your sessions
/switch ID      continue another session (an id, its start, or the short id lists show)
/history        the current session's transcript
/window [N|all] show, or set, how many past rounds the model sees
/multi          type a message of several lines; a line /end (or Ctrl-D) sends it
                (a block pasted at the prompt is one message already)
/help           this help
/exit           quit (also Ctrl-D, or Ctrl-C twice at the prompt)
Ctrl-C at the prompt clears the line; while a reply streams it stops that reply only."""

#: seconds the chat waits at exit to write replies that could not be saved earlier
DEFAULT_FLUSH_TIMEOUT = 5.0
#: request fields -o cannot set: the chat sets them itself, or they have their own option
_RESERVED_PARAMS = {"messages": "", "stream": "", "model": "--model", "max_tokens": "--max-tokens",
                    "temperature": "--temperature"}  # fmt: skip


def _flush_timeout() -> float:
    raw = os.environ.get("MOFA_FLUSH_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_FLUSH_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConfigError(f"MOFA_FLUSH_TIMEOUT must be a number of seconds > 0, got {raw!r}")
    return value


def parse_options(items: list[str]) -> dict[str, Any]:
    """``-o key=value`` pairs as request fields: a value that reads as JSON (a number, true, a list …)
    is sent as that, anything else as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"-o takes key=value, got {item!r}")
        if key in _RESERVED_PARAMS:
            use = _RESERVED_PARAMS[key]
            raise ConfigError(f"-o {key} is not allowed" + (f": use {use}" if use else ": the chat sets it"))
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


@dataclass(frozen=True)
class ChatOptions:
    session: str | None
    agent: str | None
    tenant: str | None
    user: str | None
    db: str | None
    model: str | None
    system: str | None
    window: int | None
    base_url: str | None
    max_tokens: int | None = None
    temperature: float | None = None
    options: tuple[str, ...] = ()
    resume_last: bool = False
    #: ``--functions FILE.py``: that file's public functions are the agent's tools
    functions: str | None = None

    def request(self) -> SettingsRequest:
        """The session settings set on the command line (they replace what a resumed session recorded)."""
        return SettingsRequest(
            agent=KEEP if self.agent is None else self.agent,
            model=KEEP if self.model is None else self.model,
            system_prompt=KEEP if self.system is None else self.system,
            window=KEEP if self.window is None else self.window,
        )


class ChatApp:
    """One chat: its store, turn engine, current session and terminal. Every coroutine runs on the
    runner's loop.

    The turn engine (``mofa_sdk.persistence.TurnEngine``) decides how a session is answered (agent, model,
    system prompt, window) and records it on the session, so a resumed session gets it back here, through
    the library and through ``mofa serve`` alike. ``--max-tokens``, ``--temperature`` and ``-o`` are reply
    options of each turn, not recorded."""

    def __init__(self, opts: ChatOptions, interactive: bool, out: TextIO) -> None:
        self.opts = opts
        self.interactive = interactive
        self.out = out
        self.tenant = resolve_tenant(opts.tenant)
        self.user = resolve_user(opts.user)
        self.store: Store | None = None
        self.engine: TurnEngine | None = None
        #: the engine's default provider when the chat made it (--base-url); closed with the chat
        self.provider: LLMProvider | None = None
        #: the session the chat talks to, with its agent
        self.current: TurnSession | None = None
        self.flush_timeout = _flush_timeout()
        self.extra = parse_options(list(opts.options))
        #: sessions already checked for a title this run (one lookup each)
        self.titled: set[uuid.UUID] = set()
        #: sessions this chat created: one left without a message is deleted, not left in the list
        self.created: set[uuid.UUID] = set()
        self.failed_turns = 0
        #: replies shown in this chat that are not in the database (dropped or given up at exit)
        self.lost_replies = 0

    @property
    def agent(self) -> LLMAgent | None:
        return self.current.agent if self.current is not None else None

    @property
    def plugin(self) -> PersistencePlugin | None:
        return self.current.plugin if self.current is not None else None

    @property
    def window(self) -> int | None:
        return self.current.agent.window if self.current is not None else self.opts.window

    # -- set-up ------------------------------------------------------------------------------------
    async def start(self) -> None:
        o = self.opts
        if o.resume_last and o.session is not None:
            raise ConfigError("give either --continue or --session, not both")
        tools: list[Tool] = load_functions(o.functions) if o.functions else []  # before anything is opened
        self.store = await connect_store(o.db)
        self.provider = self._base_url_provider()
        self.engine = TurnEngine(self.store, provider=self.provider, plugin_id="mofa-cli",
                                 flush_timeout=self.flush_timeout, tools=tools)
        session: Session | None = None
        if o.session is not None:
            session = await resolve_session(self.store, self.tenant, self.user, o.session)
        elif o.resume_last:
            recent = await self.store.get_user_sessions(self.tenant, self.user, limit=1)
            if not recent:
                raise NotFoundError(
                    f"no session to continue (tenant {self.tenant}, user {self.user}); start one with `mofa chat`"
                )
            session = recent[0]
        await self._open(session, o.request())

    def _base_url_provider(self) -> LLMProvider | None:
        """``--base-url`` (or OPENAI_BASE_URL): the engine's default provider; None: the environment's."""
        o = self.opts
        if not o.base_url:
            return None
        from ..llm import OpenAICompatibleProvider

        return OpenAICompatibleProvider(
            base_url=o.base_url,
            api_key=os.environ.get("OPENAI_API_KEY") or None,
            default_model=o.model or os.environ.get("OPENAI_MODEL") or "gpt-4o-mini",
        )

    async def _open(self, session: Session | uuid.UUID | None, request: SettingsRequest) -> None:
        """Make ``session`` (None: a new one) current, answered with ``request`` applied. Replaces the
        current agent, whose unsaved replies the new one takes over."""
        assert self.engine is not None
        opened = await self.engine.open(self.tenant, self.user, session, request)
        if opened.created:
            self.created.add(opened.session_id)
        old, self.current = self.current, opened
        if old is not None:
            # a rebuilt agent takes over what the old one could not save
            opened.plugin.pending.extend(old.plugin.pending)
            old.plugin.pending.clear()
            await old.aclose()  # shares the store, not its close
            if old.session_id != opened.session_id:
                await self._drop_if_empty(old.session_id)

    def _turn_options(self) -> TurnOptions:
        o = self.opts
        return TurnOptions(temperature=o.temperature, max_tokens=o.max_tokens, extra=self.extra or None)

    async def _drop_if_empty(self, session_id: uuid.UUID) -> None:
        """A session this chat started and left without a message is not kept."""
        if session_id not in self.created or self.store is None:
            return
        self.created.discard(session_id)
        with contextlib.suppress(MofaError):  # tidying up must never fail the chat
            if await self.store.count_session_messages(self.tenant, session_id) == 0:
                await self.store.delete_session(self.tenant, session_id)

    async def close(self) -> None:
        try:
            await self._save_pending()
            if self.current is not None:
                await self.current.aclose()
                await self._drop_if_empty(self.current.session_id)
        finally:
            try:
                if self.engine is not None:
                    await self.engine.aclose()
                if self.provider is not None:
                    await self.provider.aclose()
            finally:
                if self.store is not None:
                    await self.store.close()

    async def _save_pending(self) -> None:
        """Write the replies that could not be saved during the chat, bounded; say so when it fails."""
        plugin = self.plugin
        if plugin is None or not plugin.pending:
            return
        count = len(plugin.pending)
        try:
            await plugin.flush(within=self.flush_timeout)
        except (PersistenceError, asyncio.CancelledError) as exc:
            left = len(plugin.pending)
            plugin.pending.clear()  # reported here: the plugin's close must not wait for them again
            self.lost_replies += left
            reason = "interrupted" if isinstance(exc, asyncio.CancelledError) else " ".join(str(exc).split())
            err_console.print(
                Text(
                    f"error: {_replies(left)} shown in this chat could not be saved and {'is' if left == 1 else 'are'}"
                    f" lost ({reason})",
                    style="bold red",
                ),
                soft_wrap=True,
            )
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self.info(f"saved {_replies(count)} that could not be saved earlier")

    # -- output ------------------------------------------------------------------------------------
    def info(self, text: str, style: str = "dim") -> None:
        """Status lines: on the terminal when interactive, else on stderr so stdout holds only replies."""
        # soft_wrap: a piped status line stays one line, whatever its length
        (console if self.interactive else err_console).print(Text(text, style=style), soft_wrap=True)

    def banner(self) -> None:
        assert self.agent is not None
        a = self.agent
        self.info(f"session {a.session_id}", style="bold")
        if self.interactive:
            system = " · system prompt set" if a.system_prompt else ""
            self.info(f"model {a.model} · window {_window_text(self.window)}{system} · /help for commands")
            self.info(f"resume later with: mofa chat -s {short_id(a.session_id)} (or -c for the latest)")

    # -- turns -------------------------------------------------------------------------------------
    async def turn(self, text: str) -> None:
        assert self.agent is not None
        await self._check_fits(text)
        assert self.current is not None
        session_id = self.current.session_id
        stream = self.current.start(text, self._turn_options()).stream
        task = asyncio.create_task(self._consume(stream))
        restore = _route_sigint(task.cancel)
        unquiet = _quiet_input() if self.interactive else (lambda: None)
        try:
            wrote = await task
            if not wrote:
                self.info("(empty reply: the model returned no text)", style="yellow")
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not task.cancelled() or (current is not None and current.cancelling()):
                raise
            self.info("⏹ reply stopped (saved as cancelled)", style="yellow")
        except UnsavedReplyError as exc:
            self._unsaved(exc)
        except NotFoundError:
            if not await self._session_deleted(session_id):
                raise
            self.failed_turns += 1
            self.info(
                f"error: session {session_id} no longer exists (deleted elsewhere?); nothing was sent. "
                "/new starts a new session, /sessions lists yours",
                style="bold red",
            )
        except ProviderError as exc:
            self.failed_turns += 1
            self.info(f"error from the model: {' '.join(str(exc).split())}", style="bold red")
        finally:
            unquiet()
            restore()
        await self._title(session_id, text)

    async def _check_fits(self, text: str) -> None:
        """A model with a known, small context (the local one) is not sent a message that cannot fit:
        the window drops old rounds, never the new message, and an overflowing prompt comes back as an
        empty reply. Nothing is saved or sent then."""
        assert self.agent is not None
        provider = self.agent.provider
        context = getattr(provider, "context_window", None)
        if not isinstance(context, int):
            return
        load = getattr(provider, "load", None)
        if load is not None:
            await load()  # counts with the model's own tokenizer (it loads for the call anyway)
        reply = self.opts.max_tokens or self.agent.params.max_tokens or context // 4
        # the chat template adds a few tokens per message
        need = provider.count_tokens(text) + provider.count_tokens(self.agent.system_prompt) + 16
        if need + reply > context:
            raise ConfigError(
                f"this message is about {need:,} tokens: with {reply:,} kept for the reply it does not fit "
                f"the {context:,}-token context of {self.agent.model}; shorten it (nothing was sent)"
            )

    def _unsaved(self, exc: UnsavedReplyError) -> None:
        reply = exc.reply
        if isinstance(reply, PendingReply) and reply.session_deleted:
            self.failed_turns += 1
            self.lost_replies += 1
            self.info(
                f"warning: session {reply.session_id} was deleted while this reply streamed; the reply was "
                "not saved. /new starts a new session",
                style="bold red",
            )
            return
        # kept by the plugin: written before the next turn, else at exit (a failure there is reported)
        reason = " ".join(str(exc.__cause__ or exc).split())
        self.info(
            f"warning: this reply is not saved yet ({reason}); it is retried before the next turn and at exit",
            style="bold red",
        )

    async def _session_deleted(self, session_id: uuid.UUID) -> bool:
        assert self.store is not None
        try:
            return await self.store.get_session(self.tenant, session_id) is None
        except MofaError:
            return False

    async def _consume(self, stream: ChatStream) -> bool:
        """Print the reply as it streams, and each tool call and result as a dim line when they happen (on
        stderr when not interactive: stdout holds only replies); True when it had any text."""
        status: Status | None = None
        if self.interactive and console.is_terminal:
            status = console.status("thinking…", spinner="dots")
            status.start()
        wrote = False
        line_open = False  # reply text written since the last newline
        names: dict[str, str] = {}
        try:
            async for event in stream.events():
                if status is not None:
                    status.stop()
                    status = None
                if isinstance(event, TextDelta):
                    self.out.write(event.text)
                    self.out.flush()
                    wrote = wrote or bool(event.text)
                    line_open = not event.text.endswith("\n")
                    continue
                if not isinstance(event, StepFinished | ToolResultEvent):
                    continue
                if line_open:
                    self.out.write("\n")
                    self.out.flush()
                    line_open = False
                if isinstance(event, StepFinished):
                    for call in event.step.calls:
                        names[call.id] = call.name
                        self.info(call_line(call))
                else:
                    self.info(result_line(names.get(event.call.id, event.call.name), event.result),
                              style="dim red" if event.result.is_error else "dim")
        finally:
            if status is not None:
                status.stop()
            if wrote and (line_open or not names):  # without tools: as always, one newline after the reply
                self.out.write("\n")
                self.out.flush()
        return wrote

    async def _title(self, session_id: uuid.UUID, text: str) -> None:
        """Give a session its title from the first message the user typed in it."""
        if session_id in self.titled or self.store is None:
            return
        self.titled.add(session_id)
        with contextlib.suppress(MofaError):  # a title is a nicety: never fail the chat for it
            session = await self.store.get_session(self.tenant, session_id)
            if session is not None and not session.title:
                await self.store.update_session(self.tenant, session_id, title=make_title(text))

    # -- slash commands ------------------------------------------------------------------------------
    async def command(self, line: str) -> bool:
        """Run a slash command; False means quit."""
        assert self.agent is not None and self.store is not None
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        name = name.lower()
        if name in ("/exit", "/quit"):
            return False
        if name == "/help":
            console.print(HELP) if self.interactive else err_console.print(HELP)
        elif name == "/new":
            await self._open(None, self._same_settings())
            self.info(f"new session {self.agent.session_id}", style="bold")
        elif name == "/sessions":
            sessions = await self.agent.list_sessions(limit=20)
            table: Table = await sessions_table(self.store, sessions, current=self.agent.session_id)
            (console if self.interactive else err_console).print(table)
        elif name == "/switch":
            if not arg:
                raise ConfigError("usage: /switch SESSION_ID (an id, its start, or a short id)")
            target = await resolve_session(self.store, self.tenant, self.user, arg)
            await self._open(target, SettingsRequest())  # answered as that session records
            self.info(f"switched to session {target.id}", style="bold")
        elif name == "/history":
            messages = await self.store.get_session_messages(self.tenant, self.agent.session_id)
            render_transcript(messages, console if self.interactive else err_console)
        elif name == "/window":
            await self._set_window(arg)
        else:
            raise ConfigError(f"unknown command {name}; /help lists them")
        return True

    async def _set_window(self, arg: str) -> None:
        assert self.agent is not None
        if not arg:
            self.info(f"window: {_window_text(self.window)} (/window N or /window all changes it)")
            return
        if arg.lower() in ("all", "none"):
            window = None
        else:
            try:
                window = int(arg)
            except ValueError:
                raise ConfigError(f"usage: /window N (a number of rounds >= 0) or /window all, got {arg!r}") from None
            if window < 0:
                raise ConfigError(f"the window must be >= 0 rounds, got {window}")
        # The agent's window is fixed when it is built: build a new one on the same session (its history
        # is reloaded from the database with the new window).
        await self._open(self.agent.session_id, SettingsRequest(window=window))
        self.info(f"window: {_window_text(window)}")


    def _same_settings(self) -> SettingsRequest:
        """The current session's settings, for a new session (``/new``)."""
        assert self.current is not None
        s = self.current.settings
        return SettingsRequest(
            agent=s.agent, model=self.current.agent.model, system_prompt=s.system_prompt or "", window=s.window,
            max_tokens=s.max_tokens if "max_tokens" in s.model_fields_set else KEEP,
        )


def _window_text(window: int | None) -> str:
    return "all rounds" if window is None else f"{window} rounds"


def _replies(n: int) -> str:
    return "1 reply" if n == 1 else f"{n} replies"


def _route_sigint(cancel: Callable[[], Any]) -> Callable[[], None]:
    """While a reply streams, Ctrl-C cancels that reply only. Returns the undo."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, cancel)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        return lambda: None

    def restore() -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGINT)

    return restore


def _quiet_input() -> Callable[[], None]:
    """While a reply streams, keys typed are neither echoed (they would break the spinner's line and the
    reply) nor kept for the next prompt. Ctrl-C still signals. Returns the undo."""
    try:
        import termios

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError):  # no terminal here (or not a POSIX one)
        return lambda: None
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ICANON)
    termios.tcsetattr(fd, termios.TCSANOW, quiet)

    def undo() -> None:
        with contextlib.suppress(OSError, ValueError):
            termios.tcflush(fd, termios.TCIFLUSH)
            termios.tcsetattr(fd, termios.TCSANOW, saved)

    return undo


def _read(interactive: bool, prompt: str = PROMPT) -> str | None:
    """The next line typed or piped; None at the end of input."""
    if interactive:
        try:
            return input(prompt)
        except EOFError:
            print()
            return None
    line = sys.stdin.readline()
    return line if line else None


def _read_multi(interactive: bool) -> str | None:
    """The lines of one message, up to a line ``/end`` or the end of input; None when cancelled."""
    if interactive:
        console.print(Text("multi-line message: a line /end (or Ctrl-D) sends it, Ctrl-C cancels", style="dim"))
    lines: list[str] = []
    while True:
        try:
            line = _read(interactive, MORE)
        except KeyboardInterrupt:
            print()
            return None
        if line is None or line.rstrip("\r\n").strip() == "/end":
            return "\n".join(lines)
        lines.append(line.rstrip("\r\n"))


def _loop(runner: asyncio.Runner, app: ChatApp) -> None:
    interrupted = False  # Ctrl-C at the prompt clears the line; a second one in a row quits
    while True:
        try:
            line = _read(app.interactive)
        except KeyboardInterrupt:
            print()
            if interrupted:
                return
            interrupted = True
            app.info("(Ctrl-C again, or Ctrl-D, quits)")
            continue
        interrupted = False
        if line is None:
            return
        text = line.strip()
        if not text:
            continue
        try:
            if text.lower() == "/multi":
                text = (_read_multi(app.interactive) or "").strip()
                if text:
                    runner.run(app.turn(text))
            elif text.startswith("/") and not text.startswith("//"):
                if not runner.run(app.command(text)):
                    return
            else:
                runner.run(app.turn(text[1:] if text.startswith("//") else text))
        except MofaError as exc:  # a mistake in one command should not end the chat
            if not app.interactive:
                app.failed_turns += 1
            app.info(f"error: {' '.join(str(exc).split())}", style="bold red")


def _one_message(prompt: str | None, piped: str | None) -> str:
    """The one message of a one-shot chat: the prompt, then the piped input below it."""
    parts = [p.strip("\r\n") for p in (prompt, piped) if p is not None and p.strip()]
    return "\n\n".join(parts)


def chat(
    prompt: Annotated[
        str | None,
        typer.Argument(
            metavar="PROMPT",
            help="Send this one message, print the reply and exit. Piped input is added below it.",
            show_default=False,
        ),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            "-s",
            metavar="ID",
            help="Resume this session: its id, the start of it, or the short id lists show.",
            show_default=False,
        ),
    ] = None,
    resume_last: Annotated[bool, flag("--continue", "-c", help="Resume your most recently active session.")] = False,
    agent: Annotated[
        str | None,
        typer.Option("--agent", "-a", metavar="CODE", help="Use this agent row (its code).", show_default=False),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="NAME",
            help="Model name (the local model serves only its own).",
            show_default=False,
        ),
    ] = None,
    system: Annotated[
        str | None, typer.Option("--system", metavar="TEXT", help="System prompt.", show_default=False)
    ] = None,
    window: Annotated[
        int | None,
        typer.Option("--window", "-w", min=0, metavar="N", help="Past rounds the model sees (default: all)."),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-tokens",
            min=1,
            show_default=False,
            metavar="N",
            help=f"Cap on each reply's tokens (the local model's default: {LOCAL_MAX_TOKENS}).",
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature", "-t", min=0, max=2, metavar="T", help="Sampling temperature.", show_default=False
        ),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            metavar="KEY=VALUE",
            help="Another request field, KEY=VALUE (repeatable; JSON values such as 0.9 or true are sent as such).",
            show_default=False,
        ),
    ] = None,
    lines: Annotated[
        bool, flag("--lines", help="Piped input: one turn per line (slash commands work), instead of one message.")
    ] = False,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            envvar="OPENAI_BASE_URL",
            metavar="URL",
            help="An OpenAI-compatible endpoint.",
            show_default=False,
        ),
    ] = None,
    functions: Annotated[
        str | None,
        typer.Option(
            "--functions",
            metavar="FILE.py",
            help="Give the model this file's top-level public functions as tools (it calls them; the chat runs "
            "them and shows each call and result).",
            show_default=False,
        ),
    ] = None,
    db: DbOpt = None,
    tenant: TenantOpt = None,
    user: UserOpt = None,
) -> None:
    """Chat with streaming replies; every turn is saved.

    In a terminal: an interactive chat. With a PROMPT, or with piped input, one message and its reply
    (the reply alone on stdout); --lines sends piped input one turn per line."""
    opts = ChatOptions(
        session,
        agent,
        tenant,
        user,
        db,
        model,
        system,
        window,
        base_url,
        max_tokens=max_tokens,
        temperature=temperature,
        options=tuple(option or ()),
        resume_last=resume_last,
        functions=functions,
    )
    tty = sys.stdin.isatty()
    one_shot = prompt is not None or (not tty and not lines)
    interactive = tty and prompt is None
    if lines and (tty or prompt is not None):
        raise typer.BadParameter("--lines is for piped input without a PROMPT", param_hint="--lines")
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    with user_errors():
        # read before connecting: the message (and any mistake in it) is known before a session is made
        message = _one_message(prompt, None if tty else sys.stdin.read()) if one_shot else ""
        app = ChatApp(opts, interactive, sys.stdout)
        with asyncio.Runner() as runner:
            try:
                runner.run(app.start())
                if not one_shot:
                    app.banner()
                    _loop(runner, app)
                elif message:
                    runner.run(app.turn(message))  # a mistake in it is the command's one error line
                    app.banner()
                else:
                    app.info("nothing to send: give a PROMPT or pipe some text (--lines: a turn per line)")
            finally:
                runner.run(app.close())
    if app.lost_replies or (app.failed_turns and not interactive):
        raise typer.Exit(1)
