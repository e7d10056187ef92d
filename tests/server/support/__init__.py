"""Helpers of the service tests, as a package (no test imports another test module or a conftest): served
processes, the in-process app and its client, keys and SSE parsing, the scripted provider of the served app."""

from tests.support.in_process import BASE_URL, InProcess, in_process
from tests.support.processes import ROOT, FaultPair, Launcher, Served, Server

from ._http import (
    SSE,
    api_call_of,
    auth,
    close_openai_clients,
    make_key,
    openai_client,
    read_events,
    saved_reply,
    text_of,
)
from ._scripted import ByContent, reply_of, stamps

__all__ = [
    "BASE_URL", "ROOT", "SSE", "ByContent", "FaultPair", "InProcess", "Launcher", "Served", "Server", "api_call_of",
    "auth", "close_openai_clients", "in_process", "make_key", "openai_client", "read_events", "reply_of",
    "saved_reply", "stamps", "text_of",
]
