"""The operator dashboard at /admin/: accounts, sessions, CSRF, audit log and server-rendered pages."""

from ml_service.api.admin.app import build_admin_app

__all__ = ["build_admin_app"]
