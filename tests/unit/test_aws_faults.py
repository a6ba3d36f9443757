"""The local AWS's errors on demand answer as AWS does: botocore reads each one as the error code AWS
sends, and a conflict comes where two writers really meet the same item."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
from botocore.parsers import create_parser

from fanout_local.aws_faults import (
    Caller,
    FaultPlan,
    dynamodb_errors,
    parse_fault_rates,
    s3_errors,
    sqs_errors,
)

pytestmark = pytest.mark.unit

FUNCTION_KEY = "ASIAEXAMPLE"


def _parsed_code(service: str, operation: str, error: Any) -> str:
    model = botocore.session.get_session().get_service_model(service)
    parser = create_parser(model.metadata["protocol"] if service != "sqs" else "json")
    response = {"status_code": error.status, "headers": dict(error.headers), "body": error.body}
    parsed = parser.parse(response, model.operation_model(operation).output_shape)
    return str(parsed["Error"]["Code"])


def test_each_injected_error_reads_as_the_code_aws_sends() -> None:
    transaction = json.dumps({"TransactItems": [{"Update": {}}, {"Put": {}}]}).encode()
    codes = {
        _parsed_code("dynamodb", "TransactWriteItems", e)
        for e in dynamodb_errors("TransactWriteItems", transaction)
    }
    codes |= {_parsed_code("dynamodb", "UpdateItem", e) for e in dynamodb_errors("UpdateItem", b"{}")}
    codes |= {_parsed_code("s3", "GetObject", e) for e in s3_errors()}
    codes |= {_parsed_code("sqs", "SendMessage", e) for e in sqs_errors(json_protocol=True)}

    assert codes == {
        "TransactionCanceledException",
        "TransactionConflictException",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "InternalServerError",
        "SlowDown",
        "InternalError",
    }


def test_a_cancelled_transaction_names_a_reason_for_each_item() -> None:
    body = json.dumps({"TransactItems": [{"Update": {}}, {"Put": {}}, {"Update": {}}]}).encode()
    (cancelled,) = [
        e for e in dynamodb_errors("TransactWriteItems", body) if e.code == "TransactionCanceledException"
    ][:1]

    reasons = json.loads(cancelled.body)["CancellationReasons"]

    assert [r["Code"] for r in reasons] == ["TransactionConflict", "None", "None"]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("dynamo=0.1", "SERVICE=SHARE"),
        ("s3=2", "between 0 and 1"),
        ("sqs=lots", "number"),
        ("s3", "SERVICE=SHARE"),
    ],
)
def test_a_wrong_fault_spec_says_what_is_wrong(spec: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_fault_rates(spec)


def _transaction(*keys: str) -> bytes:
    items = [{"Update": {"TableName": "jobs", "Key": {"pk": {"S": k}, "sk": {"S": "job"}}}} for k in keys]
    return json.dumps({"TransactItems": items}).encode()


def test_two_writers_on_one_item_conflict_only_while_the_first_transaction_holds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = FaultPlan(rates=parse_fault_rates("dynamodb_conflict_ms=100"), seed=1)
    clock = [1000.0]
    monkeypatch.setattr("fanout_local.aws_faults.time.monotonic", lambda: clock[0])
    transact = Caller("dynamodb", FUNCTION_KEY, "TransactWriteItems")
    update = Caller("dynamodb", FUNCTION_KEY, "UpdateItem")
    single = json.dumps({"TableName": "jobs", "Key": {"pk": {"S": "a"}, "sk": {"S": "job"}}}).encode()

    assert plan.error_for(transact, {}, _transaction("a", "b")) is None
    clashing = plan.error_for(transact, {}, _transaction("c", "a"))
    separate = plan.error_for(transact, {}, _transaction("d"))
    single_write = plan.error_for(update, {}, single)
    clock[0] += 0.2
    later = plan.error_for(transact, {}, _transaction("a"))

    assert clashing is not None and clashing.code == "TransactionCanceledException"
    reasons = [r["Code"] for r in json.loads(clashing.body)["CancellationReasons"]]
    assert reasons == ["None", "TransactionConflict"]
    assert separate is None
    assert single_write is not None and single_write.code == "TransactionConflictException"
    assert later is None
