"""The web chat page of ``mofa serve``: ``GET /`` and its two assets, shipped in the package (no CDN, no build
step). The page talks to the native API with the key the user signs in with; serving it needs no key."""

from ._page import ASSETS, CSP, WEB_PATHS, router

__all__ = ["ASSETS", "CSP", "WEB_PATHS", "router"]
