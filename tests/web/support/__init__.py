"""Helpers of the web page's tests: the served page, keys, the browser, and the page's own controls."""

from ._browser import CHROMIUM, Chat, chromium_path
from ._served import WebServed, make_key, make_user, stored_messages

__all__ = ["CHROMIUM", "Chat", "WebServed", "chromium_path", "make_key", "make_user",
           "stored_messages"]
