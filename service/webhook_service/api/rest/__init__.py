"""The REST front door: Pulumi Cloud's webhook API under /api, JSON translated onto the application."""

from webhook_service.api.rest.routes import RestApi

__all__ = ["RestApi"]
