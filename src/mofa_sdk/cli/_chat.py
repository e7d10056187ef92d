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

from ..errors import (
    ConfigError,
    MofaError,
    NotFoundError,
    PersistenceError,
    ProviderError,
    UnsavedReplyError,
)
from ..ids import parse_uuid
from ..llm import ChatStream, LLMAgent, LLMAgentBuilder
from ..persistence import AgentConfig, PendingReply, PersistencePlugin, Store, connect_store
from ._common import (
    DbOpt,
    TenantOpt,
    UserOpt,
    console,
    err_console,
    resolve_tenant,
    resolve_user,
    user_errors,
)
from ._sessions import make_title, render_transcript, sessions_table

__all__ = ["chat"]

PROMPT = "you> "
HELP = """\
/new            start a new session
/sessions       list your sessions
/switch ID      continue another session
/history        the current session's transcript
/window N|all   how many past rounds the model sees
/help           this help
/exit           quit (also Ctrl-D, or Ctrl-C at the prompt)
Ctrl-C while a reply streams stops that reply only."""

#: seconds the chat waits at exit to write replies that could not be saved earlier
DEFAULT_FLUSH_TIMEOUT = 5.0


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


class ChatApp:
    """One chat: its store, agent and terminal. Every coroutine runs on the runner's loop."""

    def __init__(self, opts: ChatOptions, interactive: bool, out: TextIO) -> None:
        self.opts = opts
        self.interactive = interactive
        self.out = out
        self.tenant = resolve_tenant(opts.tenant)
        self.user = resolve_user(opts.user)
        self.window: int | None = opts.window
        self.window_set = opts.window is not None
        self.store: Store | None = None
        self.config: AgentConfig | None = None
        self.agent: LLMAgent | None = None
        self.plugin: PersistencePlugin | None = None
        self.flush_timeout = _flush_timeout()
        #: sessions already checked for a title this run (one lookup each)
        self.titled: set[uuid.UUID] = set()
        self.failed_turns = 0
        #: replies shown in this chat that are not in the database (dropped or given up at exit)
        self.lost_replies = 0

    # -- set-up ------------------------------------------------------------------------------------
    async def start(self) -> None:
        session_id = parse_uuid(self.opts.session, "--session") if self.opts.session else None
        self.store = await connect_store(self.opts.db)
        if self.opts.agent is not None:
            self.config = await self.store.get_agent_by_code_and_tenant_with_provider(
                self.tenant, self.opts.agent
            )
            if self.config is None:
                raise NotFoundError(
                    f"no agent with code {self.opts.agent!r} (and its provider) in tenant {self.tenant}; "
                    "see `mofa agents list`"
                )
        if session_id is not None:
            await self._check_session(session_id)
        self.agent = await self._build(session_id)

    async def _check_session(self, session_id: uuid.UUID) -> None:
        assert self.store is not None
        found = await self.store.get_session(self.tenant, session_id)
        if found is None or found.user_id != self.user:
            raise NotFoundError(
                f"unknown session {session_id} (tenant {self.tenant}, user {self.user}); "
                "see `mofa sessions list`, or start a new one without --session"
            )

    def _builder(self) -> LLMAgentBuilder:
        o = self.opts
        if self.config is not None:
            builder = LLMAgentBuilder.from_agent_config(self.config)
            if not self.window_set:
                self.window = self.config.agent.context_limit
        elif o.base_url:
            from ..llm import OpenAICompatibleProvider

            provider = OpenAICompatibleProvider(
                base_url=o.base_url,
                api_key=os.environ.get("OPENAI_API_KEY") or None,
                default_model=o.model or os.environ.get("OPENAI_MODEL") or "gpt-4o-mini",
            )
            builder = LLMAgentBuilder().with_provider(provider)
        else:
            builder = LLMAgentBuilder.from_env()
        if o.model:
            builder.with_model(o.model)
        if o.system is not None:
            builder.with_system_prompt(o.system)
        if self.window_set or self.config is None:
            builder.with_sliding_window(self.window)
        return builder.with_user(self.user).with_tenant(self.tenant)

    async def _build(self, session_id: uuid.UUID | None) -> LLMAgent:
        assert self.store is not None
        builder = self._builder()  # chooses the provider before any session row is written
        agent_id = self.config.agent.id if self.config is not None else None
        plugin = PersistencePlugin(
            "mofa-cli", self.store, self.user, self.tenant, agent_id, session_id,
            flush_timeout=self.flush_timeout,
        )
        agent = await builder.with_persistence_plugin(plugin).build_async()
        if self.plugin is not None:  # a rebuilt agent (/window) takes over what the old one could not save
            plugin.pending.extend(self.plugin.pending)
            self.plugin.pending.clear()
        self.plugin = plugin
        return agent

    async def close(self) -> None:
        try:
            await self._save_pending()
            if self.agent is not None:
                await self.agent.aclose()
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
            err_console.print(Text(
                f"error: {_replies(left)} shown in this chat could not be saved and {'is' if left == 1 else 'are'}"
                f" lost ({reason})", style="bold red",
            ), soft_wrap=True)
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
        window = "all rounds" if self.window is None else f"{self.window} rounds"
        self.info(f"session {a.session_id}", style="bold")
        if self.interactive:
            self.info(f"model {a.model} · window {window} · /help for commands")
            self.info(f"resume later with: mofa chat --session {a.session_id}")

    # -- turns -------------------------------------------------------------------------------------
    async def turn(self, text: str) -> None:
        assert self.agent is not None
        session_id = self.agent.session_id
        stream = self.agent.chat_stream(text)
        task = asyncio.create_task(self._consume(stream))
        restore = _route_sigint(task.cancel)
        try:
            await task
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
                "/new starts a new session, /sessions lists yours", style="bold red",
            )
        except ProviderError as exc:
            self.failed_turns += 1
            self.info(f"error from the model: {' '.join(str(exc).split())}", style="bold red")
        finally:
            restore()
        await self._title(session_id, text)

    def _unsaved(self, exc: UnsavedReplyError) -> None:
        reply = exc.reply
        if isinstance(reply, PendingReply) and reply.session_deleted:
            self.failed_turns += 1
            self.lost_replies += 1
            self.info(
                f"warning: session {reply.session_id} was deleted while this reply streamed; the reply was "
                "not saved. /new starts a new session", style="bold red",
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

    async def _consume(self, stream: ChatStream) -> None:
        status: Status | None = None
        if self.interactive and console.is_terminal:
            status = console.status("thinking…", spinner="dots")
            status.start()
        wrote = False
        try:
            async for delta in stream:
                if status is not None:
                    status.stop()
                    status = None
                self.out.write(delta)
                self.out.flush()
                wrote = wrote or bool(delta)
        finally:
            if status is not None:
                status.stop()
            if wrote:
                self.out.write("\n")
                self.out.flush()

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
            sid = await self.agent.new_session()
            self.info(f"new session {sid}", style="bold")
        elif name == "/sessions":
            sessions = await self.agent.list_sessions(limit=20)
            table: Table = await sessions_table(self.store, sessions, current=self.agent.session_id)
            (console if self.interactive else err_console).print(table)
        elif name == "/switch":
            if not arg:
                raise ConfigError("usage: /switch SESSION_ID")
            sid = parse_uuid(arg, "session id")
            await self._check_session(sid)
            await self.agent.switch_session(sid)
            self.info(f"switched to session {sid}", style="bold")
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
        if arg.lower() in ("all", "none"):
            window = None
        else:
            try:
                window = int(arg)
            except ValueError:
                raise ConfigError(
                    f"usage: /window N (a number of rounds >= 0) or /window all, got {arg!r}"
                ) from None
            if window < 0:
                raise ConfigError(f"the window must be >= 0 rounds, got {window}")
        # The agent's window is fixed when it is built: build a new one on the same session (its history
        # is reloaded from the database with the new window). The old one shares the store, not its close.
        old, self.window, self.window_set = self.agent, window, True
        self.agent = await self._build(old.session_id)
        await old.aclose()
        self.info(f"window: {'all rounds' if window is None else f'{window} rounds'}")


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


def _read(interactive: bool) -> str | None:
    """The next line typed or piped; None at the end of input."""
    if interactive:
        try:
            return input(PROMPT)
        except EOFError:
            print()
            return None
    line = sys.stdin.readline()
    return line if line else None


def _loop(runner: asyncio.Runner, app: ChatApp) -> None:
    while True:
        try:
            line = _read(app.interactive)
        except KeyboardInterrupt:  # Ctrl-C at the prompt quits
            print()
            return
        if line is None:
            return
        text = line.strip()
        if not text:
            continue
        try:
            if text.startswith("/") and not text.startswith("//"):
                if not runner.run(app.command(text)):
                    return
            else:
                runner.run(app.turn(text[1:] if text.startswith("//") else text))
        except MofaError as exc:  # a mistake in one command should not end the chat
            if not app.interactive:
                app.failed_turns += 1
            app.info(f"error: {' '.join(str(exc).split())}", style="bold red")


def chat(
    session: Annotated[
        str | None, typer.Option("--session", "-s", help="Resume this session (UUID).", show_default=False)
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", "-a", help="Use this agent row (its code).", show_default=False)
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model name.", show_default=False)
    ] = None,
    system: Annotated[str | None, typer.Option("--system", help="System prompt.", show_default=False)] = None,
    window: Annotated[
        int | None, typer.Option("--window", "-w", min=0, help="Past rounds the model sees (default: all).")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url", envvar="OPENAI_BASE_URL", help="An OpenAI-compatible endpoint.", show_default=False
        ),
    ] = None,
    db: DbOpt = None,
    tenant: TenantOpt = None,
    user: UserOpt = None,
) -> None:
    """Chat with streaming replies; every turn is saved. Piped input: one turn per line."""
    opts = ChatOptions(session, agent, tenant, user, db, model, system, window, base_url)
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    app = ChatApp(opts, interactive, sys.stdout)
    with user_errors(), asyncio.Runner() as runner:
        try:
            runner.run(app.start())
            app.banner()
            _loop(runner, app)
        finally:
            runner.run(app.close())
    if app.lost_replies or (app.failed_turns and not interactive):
        raise typer.Exit(1)
