"""The home page and the favicon (spec §2.6), both public without a query string."""

from __future__ import annotations

import struct

import httpx

from ml_service.api.favicon import FAVICON_PATH, build_favicon
from ml_service.config import Settings


def test_home_page(client: httpx.Client, base_url: str, settings: Settings) -> None:
    response = client.get(base_url + "/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert "<title> Totara ML Server </title>" in page
    assert "Welcome to the Totara Machine Learning Service - Testing" in page
    assert settings.totara_url in page and "Time: " in page
    for heading in ("Request health checks", "Request similar content", "Request user recommendations"):
        assert f"<h2>{heading}</h2>" in page
    for parameter in ("totara_item_id", "totara_user_id", "item_type", "tenant", "n_items", "/health-check"):
        assert parameter in page


def _ico_entries(data: bytes) -> list[tuple[int, bytes]]:
    reserved, kind, count = struct.unpack_from("<HHH", data, 0)
    assert (reserved, kind) == (0, 1)
    entries = []
    for i in range(count):
        width, height, _, _, planes, bits, size, offset = struct.unpack_from("<BBBBHHII", data, 6 + 16 * i)
        assert width == height and planes == 1 and bits == 32
        entries.append((width, data[offset : offset + size]))
    return entries


def test_favicon_is_a_16_32_48_icon(client: httpx.Client, base_url: str) -> None:
    response = client.get(base_url + "/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/vnd.microsoft.icon"
    entries = _ico_entries(response.content)
    assert [size for size, _ in entries] == [16, 32, 48]
    for size, image in entries:
        assert image.startswith(b"\x89PNG\r\n\x1a\n")
        assert struct.unpack(">II", image[16:24]) == (size, size)  # IHDR width, height


def test_committed_favicon_matches_its_generator() -> None:
    assert FAVICON_PATH.read_bytes() == build_favicon()


def test_app_mode_comes_from_settings(client: httpx.Client, serve, settings: Settings, store) -> None:  # type: ignore[no-untyped-def]
    url = serve(settings.with_(app_mode="Development"), store)
    assert "Welcome to the Totara Machine Learning Service - Development" in client.get(url + "/").text
