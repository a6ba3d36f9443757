"""The local stack's moto server: DynamoDB transactions stay all-or-nothing with the item-level backup,
and concurrent callers get answers, not server errors."""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError

from fanout_local.stack import _wait_for_port, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "fanout_local.moto_server", str(port)])
    try:
        _wait_for_port(port, 30)
        client = boto3.client(
            "dynamodb",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="eu-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client
    finally:
        server.terminate()
        server.wait(10)


def add(key: str, amount: int, condition: str | None = None) -> dict[str, Any]:
    update: dict[str, Any] = {
        "TableName": "t",
        "Key": {"pk": {"S": key}},
        "UpdateExpression": "ADD n :a",
        "ExpressionAttributeValues": {":a": {"N": str(amount)}},
    }
    if condition:
        update["ConditionExpression"] = condition
    return {"Update": update}


def value(client: Any, key: str) -> int | None:
    item = client.get_item(TableName="t", Key={"pk": {"S": key}}).get("Item")
    return int(item["n"]["N"]) if item else None


def test_a_failed_condition_rolls_back_every_item_of_the_transaction(dynamodb: Any) -> None:
    dynamodb.transact_write_items(TransactItems=[add("a", 1), add("b", 1)])
    with pytest.raises(ClientError) as caught:
        dynamodb.transact_write_items(TransactItems=[add("a", 10), add("new", 5), add("b", 10, "n > :a")])
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert (value(dynamodb, "a"), value(dynamodb, "b"), value(dynamodb, "new")) == (1, 1, None)


def test_concurrent_transactions_all_apply_exactly_once(dynamodb: Any) -> None:
    errors: list[Exception] = []

    def worker() -> None:
        for _ in range(25):
            try:
                dynamodb.transact_write_items(TransactItems=[add("counter", 1), add("other", 1)])
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert value(dynamodb, "counter") == 150


def test_one_connection_carries_many_requests_as_at_aws(dynamodb: Any) -> None:
    """Keep-alive: a request with a body, then others, on one TCP connection; each answer is whole and
    the next request is read right after the previous body (a chunked body too)."""
    endpoint = urlsplit(dynamodb.meta.endpoint_url)
    connection = http.client.HTTPConnection(endpoint.hostname or "", endpoint.port)
    try:
        for attempt, chunked in ((1, False), (2, True), (3, False)):
            body = b'{"TableName": "t", "Key": {"pk": {"S": "missing"}}}'
            headers = {
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.GetItem",
                "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/eu-west-1/dynamodb/aws4_request,"
                " SignedHeaders=host, Signature=x",
            }
            connection.request("POST", "/", body=iter([body]) if chunked else body, headers=headers)
            answer = connection.getresponse()
            assert answer.status == 200, (attempt, answer.read())
            assert answer.read() == b"{}"
            assert not answer.will_close
    finally:
        connection.close()
