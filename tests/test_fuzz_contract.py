"""The fuzz checker itself: it must flag each kind of broken answer (a checker that passes everything proves nothing)."""

from __future__ import annotations

from tests.fuzz_contract import PARSER_REJECTION, FuzzRequest, RawResponse, check

USER_ITEMS = FuzzRequest("GET", b"/user-items", b"totara_user_id=2&item_type=engage_article&tenant=0&n_items=2", "valid", True)
JSON = {"content-type": "application/json"}


def _answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> RawResponse:
    return RawResponse(status, {**(headers if headers is not None else JSON), "content-length": str(len(body))}, body)


def test_good_answers_pass() -> None:
    assert check(USER_ITEMS, _answer(200, b'{"items":[["1"," 0.5000"],["3","-1.2500"]],"success":true}')) == []
    assert check(USER_ITEMS, _answer(400, b'{"items":[],"message":"Bad request: n_items","success":false}')) == []
    unauthenticated = FuzzRequest("GET", b"/user-items", b"", "missing", True)
    body = b"Invalid access\nThe clocks were not in sync\n\nmissing\nservice_time: 1\nvariance: 1\n"
    assert check(unauthenticated, _answer(401, body, {"content-type": "text/plain; charset=utf-8"})) == []
    malformed = FuzzRequest("GET", b"/\xff", None, "valid", False)
    assert check(malformed, _answer(400, PARSER_REJECTION, {"content-type": "text/plain; charset=utf-8"})) == []


def test_broken_answers_are_flagged() -> None:
    broken = [
        _answer(500, b'{"error":"true","msg":"500 Internal Server Error"}'),
        _answer(200, b'{"items":[["1"," nan"]],"success":true}'),
        _answer(200, b'{"items":[["1",NaN]],"success":true}'),
        _answer(200, b'{"items":[["1"," 0.5"],["2"," 0.4000"]],"success":true}'),
        _answer(200, b'{"items":[["1"," 0.5000"],["2"," 0.4000"],["3"," 0.3000"]],"success":true}'),  # n_items=2
        _answer(400, b'{"items":[],"success":false}'),
        _answer(200, b'{"items":[],"success":true}', {"content-type": "text/html"}),
        RawResponse(200, {**JSON, "content-length": "99"}, b'{"items":[],"success":true}'),
    ]
    for response in broken:
        assert check(USER_ITEMS, response), response
    assert check(USER_ITEMS, None)  # a well-formed request left without an answer
    leaked = FuzzRequest("GET", b"/nothing", None, "wrong-key", True)
    assert check(leaked, _answer(401, b"Invalid access\nkey: s3cret\n", {"content-type": "text/plain; charset=utf-8"}), key="s3cret")
    assert check(FuzzRequest("GET", b"/docs\n", None, "valid", True), _answer(200, b"<!doctype html>", {"content-type": "text/html; charset=utf-8"}))
