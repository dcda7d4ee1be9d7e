"""The home page `/` (spec §2.6): who we are, the time, the Totara URL and how to call each endpoint."""

from __future__ import annotations

import datetime as dt
from html import escape

from ml_service.data.tenant import ITEM_TYPES

TITLE = " Totara ML Server "

_ENDPOINTS = (
    ("Request health checks", "/health-check", ()),
    (
        "Request similar content",
        "/similar-items",
        (
            ("totara_item_id", "prefixed item id, e.g. engage_article12"),
            ("tenant", "tenant id, 0 for the whole site"),
            ("n_items", "number of items to return, 1 to {max_n}"),
        ),
    ),
    (
        "Request user recommendations",
        "/user-items",
        (
            ("totara_user_id", "Totara user id, e.g. 42"),
            ("item_type", "one of " + ", ".join(ITEM_TYPES) + ", or a newer item type in the tenant's export (e.g. totara_program)"),
            ("tenant", "tenant id, 0 for the whole site"),
            ("n_items", "number of items to return, 1 to {max_n}"),
        ),
    ),
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 52rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
code { background: #f3f3f3; padding: 0 .25rem; border-radius: 3px; }
dl { margin-left: 1rem; } dt { font-family: monospace; } dd { margin: 0 0 .4rem 1.5rem; color: #555; }
.meta { color: #555; }
"""


def render_home(app_mode: str, totara_url: str, max_n_items: int, now: dt.datetime | None = None) -> str:
    """The home page HTML."""
    now = now or dt.datetime.now().astimezone()
    sections = []
    for heading, path, params in _ENDPOINTS:
        query = "&amp;".join(f"{name}=&lt;{name}&gt;" for name, _ in params)
        call = escape(path) + ("?" + query if query else "")
        items = "".join(
            f"<dt>{escape(name)}</dt><dd>{escape(text.format(max_n=max_n_items))}</dd>" for name, text in params
        )
        sections.append(
            f"<h2>{escape(heading)}</h2>\n<p><code>GET {call}</code></p>\n"
            + (f"<dl>{items}</dl>\n" if items else "<p>No parameters.</p>\n")
        )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{TITLE}</title>\n<link rel=\"icon\" href=\"/favicon.ico\">\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>Welcome to the Totara Machine Learning Service - {escape(app_mode)}</h1>\n"
        f"<p class=\"meta\">Time: {escape(now.strftime('%Y-%m-%d %H:%M:%S %Z'))}<br>\n"
        f"Totara URL: {escape(totara_url) if totara_url else '(not set)'}</p>\n"
        "<p>Every endpoint below needs Totara's <code>X-Totara-Time</code> and <code>X-Totara-Ml-Key</code> headers.</p>\n"
        + "".join(sections)
        + "</body>\n</html>\n"
    )
