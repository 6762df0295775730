"""The web console: server-rendered pages for people managing webhooks, over the same application as the APIs.

No scripts, and every asset served from here; see pages.py for the routes and sessions.py for signing in.
"""

from __future__ import annotations

from webhook_service.api.console.pages import Console
from webhook_service.api.http import Installer
from webhook_service.app import Application


def installer(app: Application) -> Installer:
    return Console(app).install
