"""moto in server mode for the local stack, made fit for concurrent Lambdas and large tables.

Two local-only changes to stock `moto.server`, both invisible to clients:
- requests are handled one at a time (a lock around the WSGI app): moto's backends are not thread-safe,
  and concurrent DynamoDB transactions made it fail with "dictionary changed size during iteration"
  (an SQS long poll gives the lock back while it waits);
- DynamoDB `TransactWriteItems` backs up only the items it touches, not a deep copy of every table it
  names: moto's copy costs O(table) per transaction, which made a million-row job quadratic.

    python -m fanout_local.moto_server PORT
"""

from __future__ import annotations

import copy
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.sqs.models import Queue
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


def main(port: int) -> None:
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    lock = threading.Lock()
    waits_unlocked(lock)
    app = serialised(DomainDispatcherApplication(create_backend_app), lock)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
