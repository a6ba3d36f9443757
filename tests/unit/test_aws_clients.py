"""The layer's boto3 clients: configured as the product needs them on AWS and on the local stack alike."""

from __future__ import annotations

from typing import Any

import pytest

from fanout import aws

pytestmark = pytest.mark.unit


class _Sent(Exception):
    """Raised once the request is signed: the test needs its headers, not an answer."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("signed")
        self.headers = headers


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _signed_put_headers(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> dict[str, str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    s3 = aws.client("s3")

    def stop(request: Any, **_: Any) -> None:
        raise _Sent({name.lower(): _text(value) for name, value in request.headers.items()})

    s3.meta.events.register("before-send.s3.PutObject", stop)
    try:
        with pytest.raises(_Sent) as sent:
            s3.put_object(Bucket="staging", Key="jobs/j-1/staged/00001", Body=b'{"row":1}\n' * 100_000)
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject", stop)
    return sent.value.headers


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:4566", "https://s3.eu-west-1.amazonaws.com"])
def test_a_staged_object_is_checked_by_its_checksum_not_hashed_again_for_the_signature(
    monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    # AWS's own default over TLS: the body's integrity is its CRC32 checksum, and the signature leaves the
    # payload out. Over the local stack's plain HTTP botocore would otherwise SHA-256 every staged byte, a
    # cost the split pays on the local stack only (a fifth of a µs a row).
    headers = _signed_put_headers(monkeypatch, endpoint)
    assert headers["x-amz-content-sha256"] in ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    assert "x-amz-checksum-crc32" in headers or "x-amz-trailer" in headers
