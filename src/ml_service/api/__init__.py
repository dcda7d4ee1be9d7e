"""The HTTP API Totara calls (ASGI app factory, routes, auth middleware)."""
