"""Token making and checking against the spec's test vectors and windows."""

from ml_service.auth import make_token, verify_request, verify_totara_side

KEY = "abc123"
VECTORS = {
    "123456": "a44934344c553000cb198d77cae685d33563617a01b17dc60d45a5557ad9c21d",
    "99999999999": "91dfe719d147209b01a133bbe80bf7aaa4d850ac93c7169eb2c065aa90bdd8f8",
    "0": "e4564920dabbb068898fbb32f98a67fe6d98520686d726d10dbc7e5badc37ead",
    "1000": "03203b76ce4a4cf093f39eeedb61a5966a20dccfca1cc4fdfb18e0006f444e9b",
}


def test_spec_vectors() -> None:
    for stamp, token in VECTORS.items():
        assert make_token(stamp, KEY) == token


def test_totara_side_window_is_inclusive_30s() -> None:
    for offset, ok in ((-10, True), (10, True), (-30, True), (30, True), (-32, False), (32, False)):
        stamp = str(1000 + offset)
        assert verify_totara_side(stamp, make_token(stamp, KEY), KEY, now=1000) is ok
    assert not verify_totara_side("1000", "0" * 64, KEY, now=1000)
    assert not verify_totara_side("0", VECTORS["0"], KEY, now=0)
    assert not verify_totara_side("1000", VECTORS["1000"], "", now=1000)


def test_service_side_window_is_strictly_under_30s() -> None:
    for offset, ok in ((29, True), (-29, True), (30, False), (-30, False), (31, False)):
        stamp = str(1000 + offset)
        result = verify_request(stamp, make_token(stamp, KEY), KEY, now=1000)
        assert result.ok is ok
        assert result.clock_skew is (not ok)
        assert result.variance == abs(offset)


def test_service_side_rejections_say_why() -> None:
    assert "missing" in verify_request(None, "x", KEY, now=1000).reason
    assert "not a whole number" in verify_request("abc", "x", KEY, now=1000).reason
    assert "does not match" in verify_request("1000", "0" * 64, KEY, now=1000).reason
    assert "no ML_TOTARA_KEY" in verify_request("1000", VECTORS["1000"], "", now=1000).reason
    assert verify_request("1000", VECTORS["1000"].upper(), KEY, now=1000).ok
