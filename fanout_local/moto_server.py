"""moto in server mode for the local stack, made fit for concurrent Lambdas and large tables.

Local-only changes to stock `moto.server`, all invisible to clients:
- requests are handled one at a time (a lock around the WSGI app): moto's backends are not thread-safe,
  and concurrent DynamoDB transactions made it fail with "dictionary changed size during iteration"
  (an SQS long poll gives the lock back while it waits, and a send no longer counts the whole queue);
- DynamoDB `TransactWriteItems` backs up only the items it touches, not a deep copy of every table it
  names: moto's copy costs O(table) per transaction, which made a million-row job quadratic; an
  UpdateExpression text is parsed once, not twice per request;
- no access log line per request (errors are still logged), and the backend of a host is looked up once;
- Lambda as a service, not a runtime: moto would run functions in Docker, which this stack replaces
  with its own workers. An asynchronous invocation (an S3 notification, an EventBridge target, `Invoke`
  with `InvocationType=Event`) is put on the function's event queue (`fanout-local-async-<name>`),
  which the event runner drains as Lambda's internal queue; moto's own SQS event-source polling is off,
  since the event runner polls as Lambda does;
- `fanout_local.aws_faults` answers a share of the functions' calls with AWS's own errors on demand,
  and counts what IAM denied (`/_fanout/stats`).

    python -m fanout_local.moto_server PORT
"""

from __future__ import annotations

import copy
import functools
import io
import json
import logging
import pickle
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from moto import settings
from moto.awslambda.models import LambdaFunction
from moto.awslambda.responses import LambdaResponse
from moto.cloudformation.parsing import get_model_map
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.serialize import BaseJSONSerializer
from moto.core.utils import unix_time, unix_time_millis
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node  # type: ignore[attr-defined]
from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
from moto.dynamodb.parsing.validators import (
    ActionCountValidator,
    OverlappingPathsValidator,
    UpdateExpressionValidator,
    UpdateHashRangeKeyValidator,
)
from moto.dynamodb.responses import DynamoHandler
from moto.events.models import EventBus, Rule
from moto.events.responses import EventsHandler
from moto.iam.access_control import IAMRequestBase, S3IAMRequest
from moto.iam.models import Role, iam_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3.exceptions import S3AccessDeniedError
from moto.s3.models import FakeBucket, s3_backends
from moto.secretsmanager.responses import SecretsManagerResponse
from moto.sqs.exceptions import QueueDoesNotExist
from moto.sqs.models import Queue, SQSBackend, sqs_backends
from moto.utilities.arns import parse_arn
from moto.utilities.utils import get_partition
from werkzeug.serving import make_server

from fanout_local.aws_faults import ObservedAws
from fanout_local.moto_models import CfnEventInvokeConfig, CfnSecret

ASYNC_QUEUE_PREFIX = "fanout-local-async-"
TRANSACTION_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}

_original_transact = DynamoDBBackend.transact_write_items


class _ShallowCopy:
    """Stands in for the `copy` module inside moto's transaction: the table "backup" is the table itself
    (no rollback through it); our wrapper restores the touched items instead."""

    deepcopy = staticmethod(lambda value, *args: value)


def _touched(backend: DynamoDBBackend, items: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    keys = []
    for entry in items:
        op_type, op = next(iter(entry.items()))
        table_name = op.get("TableName")
        if not table_name or table_name not in backend.tables:
            continue
        if op_type == "Put":
            table = backend.get_table(table_name)
            attrs = op["Item"]
            key = {table.hash_key_attr: attrs[table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = attrs[table.range_key_attr]
        else:
            key = op["Key"]
        keys.append((table_name, key))
    return keys


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """moto's TransactWriteItems with an item-level backup (same answers, O(items) instead of O(table))."""
    backup = []
    for table_name, key in _touched(self, transact_items):
        current = self.get_item(table_name, key)
        backup.append((table_name, key, copy.deepcopy(current.to_json()["Attributes"]) if current else None))
    models = sys.modules[DynamoDBBackend.__module__]
    real_copy = models.copy
    models.copy = _ShallowCopy  # type: ignore[attr-defined]
    try:
        _original_transact(self, transact_items)
    except Exception:
        for table_name, key, attributes in backup:
            if attributes is None:
                if self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            else:
                self.put_item(table_name, attributes)
        raise
    finally:
        models.copy = real_copy  # type: ignore[attr-defined]


def serialised(
    app: Callable[..., Iterable[bytes]], lock: threading.Lock | None = None
) -> Callable[..., Iterable[bytes]]:
    """The WSGI app, one request at a time (the body is read inside the lock too)."""
    lock = lock or threading.Lock()

    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            return list(app(environ, start_response))

    return handle


def waits_unlocked(lock: threading.Lock) -> None:
    """An SQS long poll (ReceiveMessage with WaitTimeSeconds) waits inside moto for up to its timeout: it
    gives the lock back while it waits, or every request would queue behind every idle poller (the event
    runner long-polls every queue, one 20 s poll after another) and a message sent meanwhile could not even arrive."""
    original = Queue.wait_for_messages

    def wait_for_messages(self: Queue, timeout: int) -> None:
        lock.release()
        try:
            original(self, timeout)
        finally:
            lock.acquire()

    Queue.wait_for_messages = wait_for_messages  # type: ignore[method-assign]


_COUNTS = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)


# DynamoDB attribute types whose wire form is the stored JSON value itself (B and BS are base64'd,
# M and L hold attribute values of their own).
_PLAIN_ATTRIBUTE_TYPES: dict[str, Callable[[Any], bool]] = {
    "S": lambda v: isinstance(v, str),
    "N": lambda v: isinstance(v, str),
    "BOOL": lambda v: isinstance(v, bool),
    "NULL": lambda v: isinstance(v, bool),
    "SS": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "NS": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}


def attribute_values_written_as_held() -> None:
    """DynamoDB answers without walking each attribute value's shape. moto's serializer looks up each of the
    ten members of AttributeValue under several spellings for every attribute of every item returned, a
    quarter of moto's time under a job; a string, number, boolean, null or string/number set is already
    its own wire form, so it is written as held. Binary values, maps and lists take moto's own path."""
    original = BaseJSONSerializer._serialize_type_structure

    def serialize(self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if (
            key
            and shape.name == "AttributeValue"
            and isinstance(value, dict)
            and len(value) == 1
            and self.operation_model.service_model.service_name == "dynamodb"
        ):
            ((kind, held),) = value.items()
            plain = _PLAIN_ATTRIBUTE_TYPES.get(kind)
            if plain is not None and plain(held):
                self._default_serialize(serialized, {kind: held}, shape, key)
                return
        original(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = serialize  # type: ignore[method-assign]


def update_expressions_parsed_once() -> None:
    """Each UpdateExpression text is tokenised and parsed once. moto parses it twice per update (the
    handler to list the names and values it uses, the backend again), for every chunk a sender claims and
    settles, though a few texts recur with new values: about a quarter of a TransactWriteItems' time. The
    parsed tree is shared safely: its readers only list its clauses, and the validator that puts the
    request's values in works on a deep copy (moto's own). A text that fails to parse raises every time."""
    original = UpdateExpressionParser.make.__func__

    @functools.lru_cache(maxsize=512)
    def parsed(expression: str) -> Any:
        return original(UpdateExpressionParser, expression)

    def make(cls: type, expression_str: str) -> Any:
        return parsed(expression_str)

    UpdateExpressionParser.make = classmethod(make)


# The checks of an update expression's form alone (one clause of each kind, no path twice, no key
# attribute): their answer depends only on the parsed text, its attribute names and the table's keys.
_FORM_CHECKS = (ActionCountValidator, OverlappingPathsValidator, UpdateHashRangeKeyValidator)
_REMEMBERED = 4096  # the entries kept of each memo below before it is emptied (a few dozen texts recur)


def update_validation_remembered() -> None:
    """An update expression's form is checked once per text, names and table, and its parsed tree is copied
    by unpickling rather than by deepcopy. moto's validator deep-copies the tree and walks it with ten
    processors for every update; the three that check only its form (ActionCountValidator walks the tree
    once per clause) and the deepcopy were well over a third of each TransactWriteItems a sender settles a
    chunk with. The checks that read the request's values and the item still run every time; a text that
    fails a form check is never remembered, so it fails every time."""
    checked: dict[tuple[int, str, tuple[tuple[str, str], ...]], Any] = {}
    pickled: dict[int, tuple[Any, bytes]] = {}
    original_validate = UpdateExpressionValidator.validate

    def fresh(expression: Any) -> Any:
        known = pickled.get(id(expression))
        if known is None or known[0] is not expression:  # the tree itself is kept, so its id is not reused
            if len(pickled) >= _REMEMBERED:
                pickled.clear()
            known = pickled[id(expression)] = (expression, pickle.dumps(expression, pickle.HIGHEST_PROTOCOL))
        return pickle.loads(known[1])  # noqa: S301 - bytes this process pickled from its own tree

    def init(
        self: UpdateExpressionValidator,
        expression: Any,
        expression_attribute_names: dict[str, str],
        expression_attribute_values: dict[str, dict[str, Any]],
        item: Any,
        table: Any,
    ) -> None:
        self.expression_attribute_names = expression_attribute_names
        self.expression_attribute_values = expression_attribute_values
        self.item = item
        self.table = table
        self.processors = self.get_ast_processors()
        form = (id(expression), table.name, tuple(sorted((expression_attribute_names or {}).items())))
        if checked.get(form) is expression:
            self.processors = [p for p in self.processors if not isinstance(p, _FORM_CHECKS)]
        else:
            self.__dict__["_fanout_form"] = (form, expression)
        self.node_to_validate = fresh(expression)

    def validate(self: UpdateExpressionValidator) -> Any:
        node = original_validate(self)
        form = self.__dict__.pop("_fanout_form", None)
        if form is not None:  # every check passed, the form ones included
            if len(checked) >= _REMEMBERED:
                checked.clear()
            checked[form[0]] = form[1]
        return node

    UpdateExpressionValidator.__init__ = init  # type: ignore[method-assign,assignment]
    UpdateExpressionValidator.validate = validate  # type: ignore[method-assign,assignment]


def action_names_remembered() -> None:
    """moto finds whether a request's action is a method of its handler class by listing every function of
    that class with `inspect.getmembers`, for every request: a tenth of a simple request's time. A class's
    functions do not change once the server serves (every patch here is made before), so each class's
    names are listed once."""
    from moto.core import responses

    original = responses.method_names_from_class
    known: dict[object, list[str]] = {}

    def method_names_from_class(clazz: object) -> list[str]:
        if clazz not in known:
            known[clazz] = original(clazz)
        return list(known[clazz])

    responses.method_names_from_class = method_names_from_class


def update_trees_walked_directly() -> None:
    """moto's update-expression processors walk the parsed tree with `DepthFirstTraverser`, which for every
    node asks two abstract-base-class isinstance questions and rebuilds the processor's map of node types
    (twice for a node it processes): a settle transaction walks its two trees with seven processors, and
    those walks were half of its time. The same walk, in the same order with the same hooks, with the map
    read once per walk and each node type's answers looked up once."""

    def traverse(self: DepthFirstTraverser, root: Any) -> Any:
        processors = list(self._processing_map().items())  # in order: the first class that matches wins
        chosen: dict[type, Callable[[Any], Any] | None] = {}
        pre_processing = self.pre_processing_of_child

        def processor_of(kind: type) -> Callable[[Any], Any] | None:
            if kind not in chosen:
                chosen[kind] = next((p for cls, p in processors if issubclass(kind, cls)), None)
            return chosen[kind]

        def walk(node: Any, child_id: int) -> Any:
            kind = type(node)
            is_node = _NODE_TYPES.get(kind)
            if is_node is None:
                is_node = _NODE_TYPES[kind] = issubclass(kind, Node)
            if not is_node:
                return node
            parent = node.parent
            if node.children is not None:
                for i, child in enumerate(node.children):
                    pre_processing(node, i)
                    walk(child, i)
            process = processor_of(kind)
            if process is not None:
                node = process(node)
                node.parent = parent
                if parent:
                    parent.children[child_id] = node
            return node

        return walk(root, -1)

    DepthFirstTraverser.traverse = traverse


_NODE_TYPES: dict[type, bool] = {}
_CONDITIONS_KEPT = 16  # the last few condition expressions parsed (those of the request in hand)


def conditions_parsed_once_per_request() -> None:
    """A condition expression is parsed once per request rather than two or three times. moto's handler
    parses it (to list the names and values it uses), a TransactWriteItems parses each item's again to
    check it, and the update it then makes parses it a third time: a tenth of a settle transaction's time.
    The parse of the same text with the same names and values is kept for the next few parses (a shared
    tree: moto only evaluates it against an item). An expression that fails to parse fails every time."""
    original = ConditionExpressionParser.parse
    recent: dict[tuple[str, str, str], tuple[Any, list[str], list[str]]] = {}

    def parse(self: ConditionExpressionParser) -> Any:
        if not self.condition_expression:
            return original(self)
        key = (
            self.condition_expression,
            json.dumps(self.expression_attribute_names or {}, sort_keys=True, default=repr),
            json.dumps(self.expression_attribute_values or {}, sort_keys=True, default=repr),
        )
        known = recent.get(key)
        if known is None:
            op = original(self)
            if len(recent) >= _CONDITIONS_KEPT:
                recent.clear()
            recent[key] = (op, list(self.expr_attr_names_found), list(self.expr_attr_values_found))
            return op
        op, names, values = known
        self.expr_attr_names_found.extend(names)
        self.expr_attr_values_found.extend(values)
        return op

    ConditionExpressionParser.parse = parse  # type: ignore[method-assign]


def sends_without_counting() -> None:
    """SQS without needless O(queue length) work per message. moto's SendMessage reads one attribute, ContentBasedDeduplication, from `queue.attributes`, which
    computes every attribute, three of them by walking every message in the queue: each message sent cost
    O(queue length), and queueing a million-row job's 2,000 chunk messages took most of a minute. During a
    send to a standard queue (ContentBasedDeduplication is a FIFO attribute) those counts read as 0: the
    send never uses them, and requests are serialised, so no other request sees them meanwhile. Likewise
    ReceiveMessage computed every attribute for each message it returned, to read the retention period."""
    for name in _COUNTS:
        counted = getattr(Queue, name)

        def count(self: Queue, counted: property = counted) -> Any:
            return 0 if self.__dict__.get("_fanout_sending") else counted.fget(self)  # type: ignore[misc]

        setattr(Queue, name, property(count))
    original = SQSBackend.send_message

    def send_message(self: SQSBackend, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.get_queue(queue_name)
        queue.__dict__["_fanout_sending"] = not queue.fifo_queue
        try:
            return original(self, queue_name, *args, **kwargs)
        finally:
            queue.__dict__["_fanout_sending"] = False

    SQSBackend.send_message = send_message  # type: ignore[method-assign]

    def is_message_valid_based_on_retention_period(self: SQSBackend, queue_name: str, message: Any) -> bool:
        # moto asks get_queue_attributes for this one value, for every message it hands out: read it.
        retention_period = self.get_queue(queue_name).message_retention_period  # type: ignore[attr-defined]
        return bool(retention_period + message.sent_timestamp / 1000 > unix_time())

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]

    def messages(self: Queue) -> list[Any]:
        # The visible messages, as moto's own property finds them, with the clock read once rather than
        # twice a message: ReceiveMessage walks the whole queue, in-flight messages included, and a
        # million-row job's queue holds 2,000.
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and now >= m.delayed_until]

    Queue.messages = property(messages)  # type: ignore[method-assign,assignment]


def backends_remembered() -> None:
    """moto finds the backend of every request by trying each service's URL patterns in turn (and
    listing its modules) for the request's host: a few milliseconds a request. The answer depends on the
    host alone, so it is remembered."""
    original = DomainDispatcherApplication.get_backend_for_host
    known: dict[str | None, Any] = {}

    def get_backend_for_host(self: DomainDispatcherApplication, host: str | None) -> Any:
        if host not in known:
            known[host] = original(self, host)
        return known[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]


def async_queue_name(function_name: str) -> str:
    """The local stand-in for Lambda's internal queue of a function's asynchronous invocations."""
    return ASYNC_QUEUE_PREFIX + function_name


def _enqueue_async(account_id: str, region: str, function_name: str, payload: str) -> None:
    backend = sqs_backends[account_id][region]
    name = async_queue_name(function_name)
    try:
        backend.get_queue(name)
    except QueueDoesNotExist:
        backend.create_queue(name)
    backend.send_message(name, payload)


def lambda_as_a_service() -> None:
    """Asynchronous invocations are queued for the event runner; synchronous ones are refused (nothing
    in the flow invokes a function synchronously); moto never polls SQS for a function itself."""

    def invoke(self: LambdaFunction, body: str, request_headers: Any, response_headers: Any) -> str:
        # S3's notification calls this with no headers: S3 always invokes asynchronously.
        kind = request_headers.get("x-amz-invocation-type", "Event") if request_headers else "Event"
        if kind != "Event":
            raise NotImplementedError(
                "the local stack runs functions through its event runner: invoke with InvocationType=Event"
            )
        _enqueue_async(self.account_id, self.region, self.function_name, body or "{}")
        return ""

    LambdaFunction.invoke = invoke  # type: ignore[method-assign]

    original_send = Rule.send_to_targets

    def send_to_targets(self: Rule, original_event: Any, transform_input: bool = True) -> None:
        if self.event_pattern.matches_event(original_event):
            for target in self.targets:
                arn = parse_arn(target["Arn"])
                if arn.service == "lambda":
                    name = arn.resource_id.split(":", 1)[0]
                    _enqueue_async(arn.account, arn.region, name, json.dumps(original_event))
        original_send(self, original_event, transform_input)  # moto's own targets (SQS, logs, buses)

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]

    # A data descriptor on the class wins over the attribute moto sets per queue: mappings registered on
    # a queue are forgotten, so a message sent is never received by moto on a function's behalf.
    Queue.lambda_event_source_mappings = property(  # type: ignore[assignment]
        lambda self: {}, lambda self, value: None
    )


def _bucket_notification(config: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's NotificationConfiguration in the shape moto's S3 keeps (its XML API's)."""

    def targets(entries: list[dict[str, Any]], arn_key: str, kind: str) -> list[dict[str, Any]]:
        return [
            {
                kind: entry[arn_key],
                "Event": [entry["Event"]],
                **(
                    {"Filter": {"S3Key": {"FilterRule": entry["Filter"]["S3Key"]["Rules"]}}}
                    if entry.get("Filter", {}).get("S3Key")
                    else {}
                ),
            }
            for entry in entries
        ]

    shaped: dict[str, Any] = {}
    if config.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled") in (True, "true"):
        shaped["EventBridgeConfiguration"] = {}
    if config.get("LambdaConfigurations"):
        shaped["CloudFunctionConfiguration"] = targets(
            config["LambdaConfigurations"], "Function", "CloudFunction"
        )
    if config.get("QueueConfigurations"):
        shaped["QueueConfiguration"] = targets(config["QueueConfigurations"], "Queue", "Queue")
    return shaped


def _roles_fixed() -> None:
    original = Role.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_from_cloudformation_json(
        cls: type[Role],
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Role:
        properties = cloudformation_json["Properties"]
        for policy in properties.get("Policies", []):
            if not isinstance(policy["PolicyDocument"], str):
                policy["PolicyDocument"] = json.dumps(policy["PolicyDocument"])
        role = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        backend = iam_backends[account_id][get_partition(region_name)]
        for arn in properties.get("ManagedPolicyArns", []):
            backend.attach_role_policy(arn, role.name)
        return role

    Role.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)  # type: ignore[method-assign,assignment]


def cloudformation_fixed() -> None:
    """What moto's CloudFormation gets wrong, made right; applied in the server and in the unit suite's
    in-process moto alike.

    - `Ref` of an AWS::Events::EventBus answered the bus object itself (it has no physical id), which
      broke every function whose environment names the bus; AWS answers the bus's name.
    - An AWS::S3::Bucket's VersioningConfiguration and NotificationConfiguration were ignored: the
      inbox had no versions (job ids use them) and sent no event on upload.
    - An AWS::IAM::Role's inline policies were kept as objects, which IAM's evaluation cannot read
      (every call of the role failed with a 500), and its ManagedPolicyArns were not attached.
    - AWS::SecretsManager::Secret and AWS::Lambda::EventInvokeConfig were skipped (and an environment
      variable naming a skipped secret silently dropped): both are created now (fanout_local.moto_models).
    """
    EventBus.physical_resource_id = property(lambda self: self.name)  # type: ignore[attr-defined]
    _roles_fixed()
    for model in (CfnSecret, CfnEventInvokeConfig):
        get_model_map()[model.cloudformation_type()] = model
    original = FakeBucket.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_from_cloudformation_json(
        cls: type[FakeBucket],
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> FakeBucket:
        bucket = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        properties = cloudformation_json.get("Properties", {})
        backend = s3_backends[account_id][get_partition(region_name)]
        status = properties.get("VersioningConfiguration", {}).get("Status")
        if status:
            backend.put_bucket_versioning(bucket.name, status)
        notification = _bucket_notification(properties.get("NotificationConfiguration", {}))
        if notification:
            backend.put_bucket_notification_configuration(bucket.name, notification)
        return bucket

    FakeBucket.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)  # type: ignore[method-assign,assignment]


def _request_json(handler: Any) -> dict[str, Any]:
    body = handler.body
    if isinstance(body, (str, bytes, bytearray)):
        try:
            body = json.loads(body or "{}")
        except ValueError:
            return {}
    return body if isinstance(body, dict) else {}


def _constant(value: str) -> Callable[[], str]:
    return lambda: value


def resources_named_for_iam() -> None:
    """IAM decides on the resource a call names, as AWS does. moto names it for SQS, S3 and IAM only and
    checks DynamoDB, Secrets Manager and EventBridge calls against "*", so a policy scoped to one table,
    secret, bus or function (every SAM policy template) would deny everything. Here those calls name their table
    (or index), secret and bus ARN."""

    def dynamodb_resource(self: DynamoHandler) -> str:
        body = _request_json(self)
        names = [body.get("TableName")]
        for entry in body.get("TransactItems", []):
            names += [op.get("TableName") for op in entry.values() if isinstance(op, dict)]
        names += list(body.get("RequestItems", {}))
        table = next((n for n in names if n), None)
        if table is None:
            return "*"
        arn = f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{table}"
        return f"{arn}/index/{body['IndexName']}" if body.get("IndexName") else arn

    def secret_resource(self: SecretsManagerResponse) -> str:
        secret_id = _request_json(self).get("SecretId")
        if not secret_id:
            return "*"
        try:
            return str(self.backend.describe_secret(secret_id).arn)
        except Exception:  # an unknown secret: AWS would answer ResourceNotFound after IAM allowed it
            return "*"

    def events_resource(self: EventsHandler) -> str:
        body = _request_json(self)
        entries = body.get("Entries") or [{}]
        bus = entries[0].get("EventBusName") or body.get("EventBusName") or "default"
        if str(bus).startswith("arn:"):
            return str(bus)
        return f"arn:aws:events:{self.region}:{self.current_account}:event-bus/{bus}"

    def lambda_resource(self: LambdaResponse) -> str:
        # /2015-03-31/functions/{name}/invocations and the other function paths name the function.
        parts = unquote(str(self.path)).split("?")[0].split("/")
        if "functions" not in parts or parts.index("functions") + 1 >= len(parts):
            return "*"
        name = parts[parts.index("functions") + 1]
        if name.startswith("arn:"):
            return name
        return f"arn:aws:lambda:{self.region}:{self.current_account}:function:{name}"

    DynamoHandler._determine_resource = dynamodb_resource  # type: ignore[attr-defined]
    LambdaResponse._determine_resource = lambda_resource  # type: ignore[attr-defined]
    original_authorize = DynamoHandler._authenticate_and_authorize_normal_action

    def authorize(self: DynamoHandler, resource: str = "*") -> None:
        """IAM has no TransactWriteItems action: AWS authorises each item's own action (PutItem,
        UpdateItem, DeleteItem, ConditionCheckItem; GetItem in TransactGetItems) on its table."""
        if self._get_action() not in ("TransactWriteItems", "TransactGetItems"):
            original_authorize(self, resource)
            return
        checks = set()
        for entry in _request_json(self).get("TransactItems", []):
            for kind, item in entry.items():
                arn = f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{item.get('TableName')}"
                checks.add((TRANSACTION_ITEM_ACTIONS.get(kind, kind), arn))
        for action, arn in sorted(checks):
            self._get_action = _constant(action)  # type: ignore[method-assign]
            try:
                original_authorize(self, arn)
            finally:
                del self._get_action

    DynamoHandler._authenticate_and_authorize_normal_action = authorize  # type: ignore[method-assign,assignment]
    SecretsManagerResponse._determine_resource = secret_resource  # type: ignore[attr-defined]
    EventsHandler._determine_resource = events_resource  # type: ignore[attr-defined]


def presigned_urls_authorised() -> None:
    """An S3 presigned URL (SigV4 in the query string, no Authorization header: Symplify's download) made
    moto's IAM check fail with a 500. Here it is checked as AWS checks it for what matters to the flow:
    the signer's key must exist and its principal must be allowed the action on the object, and the URL
    must not have expired; the query signature itself is not recomputed (listed in not_emulated)."""
    original = ActionAuthenticatorMixin._authenticate_and_authorize_s3_action

    def authorize(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        query = self.querystring
        if "Authorization" in self.headers or "X-Amz-Credential" not in query:
            original(self, bucket_name, key_name)
            return
        if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
            ActionAuthenticatorMixin.request_count += 1
            return
        signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if (datetime.now(UTC) - signed_at).total_seconds() > int(query.get("X-Amz-Expires", ["0"])[0]):
            raise S3AccessDeniedError()
        headers = dict(self.headers)
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={query['X-Amz-Credential'][0]}, SignedHeaders=host, Signature=-"
        )
        if "X-Amz-Security-Token" in query:
            headers["X-Amz-Security-Token"] = query["X-Amz-Security-Token"][0]
        arn = f"{bucket_name or '*'}/{key_name}" if key_name else (bucket_name or "*")
        request = S3IAMRequest(
            account_id=self.current_account,
            method=self.method,
            path=self.raw_path,
            data=self.data,
            body=self.raw_body,
            headers=headers,
            action=self._get_action(),
        )
        request.check_action_permitted(f"arn:aws:s3:::{arn}")

    ActionAuthenticatorMixin._authenticate_and_authorize_s3_action = authorize  # type: ignore[method-assign]


# API operations whose IAM action has another name (moto checks "service:Operation").
IAM_ACTION_OF_OPERATION = {"lambda:Invoke": "lambda:InvokeFunction"}


def iam_actions_named_as_aws_names_them() -> None:
    """Lambda's Invoke API is authorised as lambda:InvokeFunction; moto checked "lambda:Invoke", which no
    policy grants, so the splitter's own continuation was denied."""
    original = IAMRequestBase.__init__

    def init(self: IAMRequestBase, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._action = IAM_ACTION_OF_OPERATION.get(self._action, self._action)

    IAMRequestBase.__init__ = init  # type: ignore[method-assign]


def bodiless_requests_signed_right() -> None:
    """moto checks a SigV4 signature against `body or data`; a GET without a body (Lambda's
    GetFunctionConfiguration, ListEventSourceMappings, ...) then hashes moto's parsed request data
    instead of the empty payload the client signed, and every such call is refused as
    SignatureDoesNotMatch once IAM is enforced. A request without a body is checked as one."""
    original = IAMRequestBase._create_aws_request

    def create_aws_request(self: IAMRequestBase) -> Any:
        if not self._body and self._method in ("GET", "HEAD", "DELETE"):
            saved, self._data = self._data, {}
            try:
                return original(self)
            finally:
                self._data = saved
        return original(self)

    IAMRequestBase._create_aws_request = create_aws_request  # type: ignore[method-assign]


class _QuietRequestHandler(MotoRequestHandler):
    """moto's request handler without the access log (one line a request through werkzeug's logger was
    about a tenth of the server's time under a million-row job; errors are still logged), keeping the
    connection open between requests as AWS's endpoints do.

    werkzeug's development server closes every connection after one answer (`Connection: close`), then
    waits up to 10 ms for stray request bytes: each AWS call cost a TCP connection, a server thread and
    a selector, on both sides, about a third of moto's time a call. Here the request body is read whole
    before the app runs (so the next request starts right after it), and the answer goes out in one
    write with its length; clients that ask for `Connection: close` still get it.
    """

    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        body = _request_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        answer: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer[:] = [status, headers]
            return None

        try:
            result = self.server.app(environ, start_response)
            try:
                content = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception:
            logging.getLogger("werkzeug").exception("Error on request %s %s", self.command, self.path)
            answer[:] = ["500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")]]
            content = b"Internal Server Error"
            self.close_connection = True
        self.wfile.write(_response_bytes(answer[0], answer[1], content, self, environ["REQUEST_METHOD"]))

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes: without TCP_NODELAY, Nagle's algorithm holds the
        # body's last segment until the client acknowledges the headers (a delayed ACK: up to 40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _request_body(environ: dict[str, Any]) -> bytes:
    """The whole request body: Content-Length bytes, or a chunked body to its end."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        return bytes(stream.read())
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return bytes(stream.read(length)) if length > 0 else b""


_BODILESS_STATUSES = ("1", "204", "304")
_HOP_BY_HOP = frozenset({"connection", "transfer-encoding", "keep-alive"})  # this server's to set


def _response_bytes(
    status: str, headers: list[tuple[str, str]], content: bytes, handler: _QuietRequestHandler, method: str
) -> bytes:
    """Status line, headers and body in one piece; the length added when the app did not give it."""
    names = {name.lower() for name, _ in headers}
    lines = [
        f"HTTP/1.1 {status}",
        f"Server: {handler.version_string()}",
        f"Date: {handler.date_time_string()}",
    ]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in _HOP_BY_HOP]
    if "content-length" not in names and method != "HEAD" and not status.startswith(_BODILESS_STATUSES):
        lines.append(f"Content-Length: {len(content)}")
    if handler.close_connection:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (b"" if method == "HEAD" else content)


_PATCHED = threading.Event()


def patch_moto() -> None:
    """Every change above that does not need the server: for the server, and for moto's in-process AWS
    in the unit suite, so both deploy and behave alike. Applied once per process."""
    if _PATCHED.is_set():
        return
    _PATCHED.set()
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    sends_without_counting()
    update_expressions_parsed_once()
    update_validation_remembered()
    conditions_parsed_once_per_request()
    update_trees_walked_directly()
    action_names_remembered()
    attribute_values_written_as_held()
    cloudformation_fixed()
    lambda_as_a_service()
    bodiless_requests_signed_right()
    iam_actions_named_as_aws_names_them()
    presigned_urls_authorised()
    resources_named_for_iam()


def backend_app(service: str) -> Any:
    """moto's Flask app of one service, out of Flask's debug mode, which moto turns on: in it every request
    that reads its body builds a new class (Flask's helper for form-upload errors), a twentieth of a simple
    request's time. Errors still reach the server, which logs them, as in debug mode."""
    app = create_backend_app(service)  # type: ignore[arg-type]
    app.debug = False
    app.config["PROPAGATE_EXCEPTIONS"] = True
    return app


def main(port: int) -> None:
    # A request moto fails on is logged with its traceback (werkzeug's logger), never silently a 500.
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s %(message)s")
    patch_moto()
    backends_remembered()
    lock = threading.Lock()
    waits_unlocked(lock)
    app = ObservedAws(serialised(DomainDispatcherApplication(backend_app), lock))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_QuietRequestHandler)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
