"""The local moto's changes keep AWS's answers: DynamoDB items of every attribute type come back as put."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import Binary
from moto import mock_aws

from fanout_local.moto_server import patch_moto

pytestmark = pytest.mark.unit

ITEM: dict[str, Any] = {
    "pk": "job#1",
    "text": 'Åsa, "quoted"\nline',
    "empty": "",
    "number": Decimal("12.5"),
    "yes": True,
    "no": False,
    "nothing": None,
    "strings": {"a", "b"},
    "numbers": {Decimal(1), Decimal(2)},
    "blob": Binary(b"\x00\xffbytes"),
    "blobs": {Binary(b"x"), Binary(b"y")},
    "map": {"inner": "v", "n": Decimal(3), "deeper": {"flag": True, "list": ["s", Decimal(4), None]}},
    "list": ["one", Decimal(2), {"three": "3"}, [Binary(b"4")]],
}


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        patch_moto()
        dynamodb = boto3.resource("dynamodb", region_name="eu-west-1")
        yield dynamodb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


def test_an_item_of_every_attribute_type_comes_back_as_put(table: Any) -> None:
    table.put_item(Item=ITEM)

    assert table.get_item(Key={"pk": "job#1"}, ConsistentRead=True)["Item"] == ITEM
    assert table.query(KeyConditionExpression="pk = :k", ExpressionAttributeValues={":k": "job#1"})[
        "Items"
    ] == [ITEM]
    old = table.update_item(
        Key={"pk": "job#1"},
        UpdateExpression="SET #n = :n",
        ExpressionAttributeNames={"#n": "number"},
        ExpressionAttributeValues={":n": Decimal(13)},
        ReturnValues="ALL_OLD",
    )["Attributes"]
    assert old == ITEM


def test_an_update_expression_is_parsed_once_and_every_update_still_applies_its_own_values(
    table: Any,
) -> None:
    """Every chunk a sender settles sends the same few update expressions with new values: moto parses
    each text once, and the values, names and conditions of each request still apply (the parsed tree is
    never changed: moto's validator works on a copy)."""
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    expression = "SET #s = :s, n_sent = :n ADD hits :one, tags :tag"
    UpdateExpressionParser.make(expression)
    parsed = UpdateExpressionParser.make(expression)
    for n in range(1, 4):
        table.update_item(
            Key={"pk": "job#2"},
            UpdateExpression=expression,
            ConditionExpression="attribute_not_exists(#s) OR #s <> :s",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":s": f"s{n}", ":n": n, ":one": 1, ":tag": {f"t{n}"}},
        )

    assert UpdateExpressionParser.make(expression) is parsed
    assert table.get_item(Key={"pk": "job#2"}, ConsistentRead=True)["Item"] == {
        "pk": "job#2",
        "state": "s3",
        "n_sent": 3,
        "hits": 3,
        "tags": {"t1", "t2", "t3"},
    }
    with pytest.raises(table.meta.client.exceptions.ConditionalCheckFailedException):
        table.update_item(
            Key={"pk": "job#2"},
            UpdateExpression=expression,
            ConditionExpression="attribute_not_exists(#s) OR #s <> :s",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":s": "s3", ":n": 9, ":one": 1, ":tag": {"t9"}},
        )
    with pytest.raises(table.meta.client.exceptions.ClientError, match=r"attribute value .*not defined"):
        table.update_item(Key={"pk": "job#2"}, UpdateExpression="SET n_sent = :missing")


def test_an_update_expression_checked_once_is_still_refused_where_its_names_make_it_wrong(table: Any) -> None:
    """moto checks an update expression's form (one SET, no path twice, no key attribute) once per text
    and names: the same text with other names is checked again, and a refused one is refused every time."""
    expression = "SET #a = :v, #b = :w"
    for n in range(2):
        table.update_item(
            Key={"pk": "job#3"},
            UpdateExpression=expression,
            ExpressionAttributeNames={"#a": "x", "#b": "y"},
            ExpressionAttributeValues={":v": n, ":w": n},
        )
    for _ in range(2):
        with pytest.raises(table.meta.client.exceptions.ClientError, match="Two document paths overlap"):
            table.update_item(
                Key={"pk": "job#3"},
                UpdateExpression=expression,
                ExpressionAttributeNames={"#a": "x", "#b": "x"},
                ExpressionAttributeValues={":v": 1, ":w": 2},
            )
        with pytest.raises(table.meta.client.exceptions.ClientError, match="part of the key"):
            table.update_item(
                Key={"pk": "job#3"},
                UpdateExpression=expression,
                ExpressionAttributeNames={"#a": "x", "#b": "pk"},
                ExpressionAttributeValues={":v": 1, ":w": "job#4"},
            )
        with pytest.raises(table.meta.client.exceptions.ClientError, match="SET"):
            table.update_item(
                Key={"pk": "job#3"},
                UpdateExpression="SET x = :v SET y = :v",
                ExpressionAttributeValues={":v": 1},
            )

    assert table.get_item(Key={"pk": "job#3"}, ConsistentRead=True)["Item"] == {"pk": "job#3", "x": 1, "y": 1}


def test_a_condition_parsed_once_is_evaluated_against_the_item_as_it_is_now(table: Any) -> None:
    """moto keeps the last few condition parses (a request parsed the same condition up to three times):
    the same condition with the same values, sent again after the item changed, sees the change; one that
    does not parse is refused every time."""
    claim = {
        "Key": {"pk": "job#5"},
        "UpdateExpression": "SET #s = :flight",
        "ConditionExpression": "attribute_not_exists(#s) OR #s = :pending",
        "ExpressionAttributeNames": {"#s": "state"},
        "ExpressionAttributeValues": {":flight": "in_flight", ":pending": "pending"},
    }
    table.update_item(**claim)
    with pytest.raises(table.meta.client.exceptions.ConditionalCheckFailedException):
        table.update_item(**claim)
    table.put_item(Item={"pk": "job#5", "state": "pending"})
    table.update_item(**claim)
    for _ in range(2):
        with pytest.raises((table.meta.client.exceptions.ClientError, ValueError), match="Bad comparison"):
            table.update_item(
                Key={"pk": "job#5"},
                UpdateExpression="SET #s = :flight",
                ConditionExpression="#s = = :flight",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":flight": "in_flight"},
            )

    assert table.get_item(Key={"pk": "job#5"}, ConsistentRead=True)["Item"] == {
        "pk": "job#5",
        "state": "in_flight",
    }


def test_every_kind_of_update_action_still_applies(table: Any) -> None:
    """moto's update processors walk the tree by a shorter path here (update_trees_walked_directly): SET
    with arithmetic, functions and nested paths, REMOVE, ADD and DELETE each still do what they say."""
    table.put_item(
        Item={"pk": "job#6", "n": 5, "gone": "x", "tags": {"a", "b"}, "events": ["one"], "m": {"k": 1}}
    )
    expression = (
        "SET n = n + :two, opened = if_not_exists(opened, :first), events = list_append(events, :more), m.k = :three,"
        " #c = :c REMOVE gone ADD hits :one DELETE tags :drop"
    )
    for _ in range(2):
        table.update_item(
            Key={"pk": "job#6"},
            UpdateExpression=expression,
            ExpressionAttributeNames={"#c": "count"},
            ExpressionAttributeValues={
                ":two": 2,
                ":first": "f",
                ":more": ["two"],
                ":three": 3,
                ":c": 7,
                ":one": 1,
                ":drop": {"a"},
            },
        )

    assert table.get_item(Key={"pk": "job#6"}, ConsistentRead=True)["Item"] == {
        "pk": "job#6",
        "n": 9,
        "opened": "f",
        "events": ["one", "two", "two"],
        "m": {"k": 3},
        "count": 7,
        "hits": 2,
        "tags": {"b"},
    }
