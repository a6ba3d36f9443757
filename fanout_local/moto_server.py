"""moto in server mode for the local stack, made fit for concurrent Lambdas and large tables.

Local-only changes to stock `moto.server`, all invisible to clients:
- requests are handled one at a time (a lock around the WSGI app): moto's backends are not thread-safe,
  and concurrent DynamoDB transactions made it fail with "dictionary changed size during iteration"
  (an SQS long poll gives the lock back while it waits, and a send no longer counts the whole queue);
- DynamoDB `TransactWriteItems` backs up only the items it touches, not a deep copy of every table it
  names: moto's copy costs O(table) per transaction, which made a million-row job quadratic;
- no access log line per request (errors are still logged), and the backend of a host is looked up once.

    python -m fanout_local.moto_server PORT
"""

from __future__ import annotations

import copy
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.core.utils import unix_time
from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.sqs.models import Queue, SQSBackend
from werkzeug.serving import make_server

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
    runner long-polls each queue every second) and a message sent meanwhile could not even arrive."""
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


class _QuietRequestHandler(MotoRequestHandler):
    """moto's request handler without the access log: one line a request through werkzeug's logger was
    about a tenth of the server's time under a million-row job. Errors are still logged."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes: without TCP_NODELAY, Nagle's algorithm holds the
        # body's last segment until the client acknowledges the headers (a delayed ACK: up to 40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main(port: int) -> None:
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    sends_without_counting()
    backends_remembered()
    lock = threading.Lock()
    waits_unlocked(lock)
    app = serialised(DomainDispatcherApplication(create_backend_app), lock)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_QuietRequestHandler)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
