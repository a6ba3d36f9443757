"""A small client of the emulators' admin API (``/_emulator/...``), for tests and the local stack, and
helpers to call one emulator in-process (no sockets) with an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx

from emulators.faults import FaultSettings


class FakeClock:
    """A settable clock for the daily quotas: ``clock()`` returns ``now`` (an aware datetime)."""

    def __init__(self, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move the clock on, e.g. ``advance(seconds=30)``."""
        self.now += timedelta(**delta)


class AppClient:
    """Sends requests straight to an ASGI app (e.g. ``MateoEmulator(..., clock=FakeClock(...)).build_app()``)
    in-process: deterministic, no server thread. Each call runs in its own short event loop."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; ``kwargs`` as for ``httpx.AsyncClient.request`` (json=, content=, headers=)."""

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(send())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET ``path``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """POST ``path``."""
        return self.request("POST", path, **kwargs)


class AdminClient:
    """Calls the admin endpoints of running emulators; ``admin_urls`` maps provider -> http://host:port."""

    def __init__(self, admin_urls: Mapping[str, str], client: httpx.Client | None = None) -> None:
        self.admin_urls = dict(admin_urls)
        self.client = client or httpx.Client(trust_env=False, timeout=5.0)

    def url(self, provider: str, path: str) -> str:
        """Full URL of an admin endpoint, e.g. url("mateo", "received")."""
        return f"{self.admin_urls[provider]}/_emulator/{path}"

    def health(self, provider: str) -> dict[str, Any]:
        """GET /_emulator/health."""
        return self.client.get(self.url(provider, "health")).raise_for_status().json()

    def received(self, provider: str) -> dict[str, Any]:
        """GET /_emulator/received: ``{"provider", "requests", "targets"}``."""
        return self.client.get(self.url(provider, "received")).raise_for_status().json()

    def targets(self, provider: str) -> dict[str, dict[str, int]]:
        """Only the ``targets`` part of ``received``: target id -> identity -> times."""
        return self.received(provider)["targets"]

    def faults(self, provider: str) -> FaultSettings:
        """GET /_emulator/faults."""
        return FaultSettings.from_dict(
            self.client.get(self.url(provider, "faults")).raise_for_status().json()
        )

    def set_faults(self, provider: str, settings: str | FaultSettings) -> FaultSettings:
        """POST /_emulator/faults with a fault string or FaultSettings; returns what the emulator now uses."""
        body = {"spec": settings} if isinstance(settings, str) else settings.to_dict()
        response = self.client.post(self.url(provider, "faults"), json=body).raise_for_status()
        return FaultSettings.from_dict(response.json())

    def seed(self, provider: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """POST /_emulator/seed (merge); returns the provider's seeded state."""
        return self.client.post(self.url(provider, "seed"), json=dict(data)).raise_for_status().json()

    def reset(self, provider: str | None = None) -> None:
        """POST /_emulator/reset on one provider, or on all when ``provider`` is None."""
        for name in [provider] if provider else list(self.admin_urls):
            self.client.post(self.url(name, "reset")).raise_for_status()

    def close(self) -> None:
        """Close the underlying HTTP client."""
        self.client.close()
