"""Run the four provider emulators: all uvicorn servers in ONE background thread and ONE event loop.

    from emulators.server import start_emulators
    with start_emulators() as emus:            # free ports, default fixture, no faults
        emus.base_urls["mateo"]                # "http://127.0.0.1:PORT/api/v1"
        emus.admin_urls["mateo"]               # "http://127.0.0.1:PORT" (+ /_emulator/...)

``python -m emulators`` runs the same thing in the foreground (see emulators/__main__.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from emulators.altcraft import AltcraftEmulator
from emulators.base import PROVIDERS, TRANSPORT_EXTENSION, Emulator, load_fixture
from emulators.faults import FaultSettings, UtcClock
from emulators.mateo import MateoEmulator
from emulators.symplify import SymplifyEmulator
from emulators.workshop import WorkshopEmulator

EMULATOR_CLASSES: dict[str, type[Emulator]] = {
    "mateo": MateoEmulator,
    "symplify": SymplifyEmulator,
    "workshop": WorkshopEmulator,
    "altcraft": AltcraftEmulator,
}
BASE_PATHS: dict[str, str] = {
    "mateo": "/api/v1",
    "symplify": "/rest",
    "workshop": "/api/v1",
    "altcraft": "/api/v1.1",
}


class EmulatorProtocol(H11Protocol):
    """uvicorn's h11 protocol, exposing the connection's transport to the app (for "drop" faults)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Wrap the app so every request scope carries this connection's transport."""
        super().connection_made(transport)
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})[TRANSPORT_EXTENSION] = transport
            await inner(scope, receive, send)

        self.app = app


@dataclass
class EmulatorSet:
    """Running emulators. ``stop()`` (or leaving the ``with`` block) shuts them all down."""

    host: str
    ports: dict[str, int]
    emulators: dict[str, Emulator]
    _servers: dict[str, uvicorn.Server] = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _errors: list[BaseException] = field(default_factory=list, repr=False)

    @property
    def admin_urls(self) -> dict[str, str]:
        """Provider -> ``http://host:port`` (admin endpoints live under /_emulator/)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return {name: f"http://{host}:{port}" for name, port in self.ports.items()}

    @property
    def base_urls(self) -> dict[str, str]:
        """Provider -> the base URL its client is configured with."""
        return {name: url + BASE_PATHS[name] for name, url in self.admin_urls.items()}

    def urls(self) -> dict[str, Any]:
        """``{"mateo": base, "symplify": ..., "workshop": ..., "altcraft": ..., "admin": {...}}``."""
        return {**self.base_urls, "admin": self.admin_urls}

    def to_json(self) -> str:
        """``urls()`` as one line of JSON (what ``python -m emulators`` prints)."""
        return json.dumps(self.urls(), separators=(", ", ": "))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop all servers; requests still in flight (e.g. timeout faults) are cut off."""
        for server in self._servers.values():
            server.should_exit = True
            server.force_exit = True  # do not wait for in-flight requests
        self._thread.join(timeout)

    def __enter__(self) -> EmulatorSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP (not 0): asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it Nagle + delayed ACK cost ~40 ms per response (headers and body are
    # written separately).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _check_names(what: str, names: Mapping[str, Any] | None) -> None:
    unknown = set(names or {}) - set(PROVIDERS)
    if unknown:
        raise ValueError(f"unknown provider(s) in {what}: {', '.join(sorted(unknown))}; known: {PROVIDERS}")


def start_emulators(
    host: str = "127.0.0.1",
    ports: Mapping[str, int] | None = None,
    fixture: str | Path | Mapping[str, Any] | None = None,
    faults: Mapping[str, FaultSettings] | None = None,
    startup_timeout: float = 10.0,
    clock: UtcClock | None = None,
) -> EmulatorSet:
    """Start all four emulators and return once every one is listening.

    ``ports``: provider -> port (missing or 0 = a free port). ``fixture``: a JSON file path or an
    already-loaded dict (default: emulators/fixtures/default.json). ``faults``: provider ->
    FaultSettings (missing = no faults, no limits; e.g. ``{"mateo": mateo.documented_limits()}``, or
    ``FaultSettings(daily_requests=..., daily_entities=...)`` to raise them). ``clock``: the UTC clock
    of the daily quotas (default: the real one). Raises OSError if a port is taken, ValueError on bad
    names.
    """
    _check_names("ports", ports)
    _check_names("faults", faults)
    seed = dict(fixture) if isinstance(fixture, Mapping) else load_fixture(fixture)
    sockets: dict[str, socket.socket] = {}
    try:
        for name in PROVIDERS:
            sockets[name] = _bind(host, (ports or {}).get(name, 0))
    except OSError:
        for sock in sockets.values():
            sock.close()
        raise
    emulators = {name: EMULATOR_CLASSES[name](seed, (faults or {}).get(name), clock) for name in PROVIDERS}
    servers = {name: uvicorn.Server(_config(emulators[name], host)) for name in PROVIDERS}
    errors: list[BaseException] = []
    thread = threading.Thread(
        target=_run_loop, args=(servers, sockets, errors), name="provider-emulators", daemon=True
    )
    emulator_set = EmulatorSet(
        host=host,
        ports={name: sock.getsockname()[1] for name, sock in sockets.items()},
        emulators=emulators,
        _servers=servers,
        _thread=thread,
        _errors=errors,
    )
    thread.start()
    _wait_started(emulator_set, startup_timeout)
    return emulator_set


def create_app(
    provider: str,
    fixture: str | Path | Mapping[str, Any] | None = None,
    faults: FaultSettings | None = None,
    clock: UtcClock | None = None,
) -> Any:
    """One provider's ASGI app, e.g. to serve it yourself (``drop`` then needs uvicorn's h11 protocol)."""
    _check_names("provider", {provider: None})
    seed = dict(fixture) if isinstance(fixture, Mapping) else load_fixture(fixture)
    return EMULATOR_CLASSES[provider](seed, faults, clock).build_app()


def _config(emulator: Emulator, host: str) -> uvicorn.Config:
    return uvicorn.Config(
        emulator.build_app(),
        host=host,
        log_level="warning",
        log_config=None,  # leave the host process's logging configuration alone
        access_log=False,
        lifespan="off",
        http=EmulatorProtocol,
        ws="none",
        timeout_keep_alive=30,
    )


def _run_loop(
    servers: dict[str, uvicorn.Server], sockets: dict[str, socket.socket], errors: list[BaseException]
) -> None:
    async def serve_all() -> None:
        await asyncio.gather(*(servers[name].serve(sockets=[sockets[name]]) for name in servers))

    try:
        asyncio.run(serve_all())
    except BaseException as exc:  # reported by _wait_started / visible to the caller
        errors.append(exc)
    finally:
        for sock in sockets.values():
            sock.close()


def _wait_started(emulator_set: EmulatorSet, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(server.started for server in emulator_set._servers.values()):
        if emulator_set._errors or not emulator_set._thread.is_alive():
            raise RuntimeError(f"emulators failed to start: {emulator_set._errors!r}")
        if time.monotonic() > deadline:
            emulator_set.stop()
            raise RuntimeError("emulators did not start in time")
        time.sleep(0.002)
