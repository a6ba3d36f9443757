"""Each function's configuration: a validated model read once from the environment at cold start.

Logic never reads `os.environ`; handlers call `load(...)` once and pass the model down, so a missing
variable fails loudly at start rather than halfway through a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fanout.destinations import Destination
from fanout.options import DEFAULT_TOLERATED_INVALID_PERCENT


class _Env(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)


class CommonConfig(_Env):
    table_name: str = Field(alias="TABLE_NAME", min_length=1)
    bucket_name: str = Field(alias="BUCKET_NAME", min_length=1)
    event_bus_name: str = Field(alias="EVENT_BUS_NAME", min_length=1)
    retention_days: int = Field(alias="RETENTION_DAYS", default=90, ge=1)


class SplitterConfig(CommonConfig):
    queue_url_mateo: str = Field(alias="QUEUE_URL_MATEO")
    queue_url_mateo_message: str = Field(alias="QUEUE_URL_MATEO_MESSAGE")
    queue_url_symplify: str = Field(alias="QUEUE_URL_SYMPLIFY")
    queue_url_workshop: str = Field(alias="QUEUE_URL_WORKSHOP")
    queue_url_altcraft: str = Field(alias="QUEUE_URL_ALTCRAFT")
    presign_expiry_seconds: int = Field(alias="PRESIGN_EXPIRY_SECONDS", default=86400, ge=60, le=604800)
    tolerated_invalid_percent: float = Field(
        alias="TOLERATED_INVALID_PERCENT", default=DEFAULT_TOLERATED_INVALID_PERCENT, ge=0, le=100
    )
    routes_key: str = Field(alias="ROUTES_KEY", default="config/routes.yaml")

    def queue_url(self, destination: Destination) -> str:
        """The chunk queue of `destination`."""
        return str(getattr(self, f"queue_url_{destination.env_suffix.lower()}"))


class HandsOverSettles(_Env):
    """A function that settles a job's last chunk hands the job's settle to the job function (the
    splitter's: fanout.settling)."""

    job_function_name: str = Field(alias="JOB_FUNCTION_NAME", min_length=1)


class SenderConfig(CommonConfig, HandsOverSettles):
    destination: Destination = Field(alias="DESTINATION")
    queue_url: str = Field(alias="QUEUE_URL")
    secret_name: str = Field(alias="SECRET_NAME")
    rate_per_second: float = Field(alias="RATE_PER_SECOND", default=0.0, ge=0)
    max_concurrency: int = Field(alias="MAX_CONCURRENCY", default=2, ge=1)
    # How long a claimed chunk stays ours; longer than the function's timeout, so a live lease means a
    # live attempt and an expired one means the attempt died.
    chunk_lease_seconds: int = Field(alias="CHUNK_LEASE_SECONDS", default=120, ge=2)
    # Longest rest in the queue between deliveries of a chunk that met a transient error.
    max_backoff_seconds: int = Field(alias="MAX_BACKOFF_SECONDS", default=300, ge=1, le=43200)
    # A provider batch that finishes later (Symplify): the longest rest between two status polls, and how
    # long after its start it may run before its rows end uncertain (with what to check).
    batch_poll_seconds: int = Field(alias="BATCH_POLL_SECONDS", default=30, ge=1, le=900)
    max_batch_wait_seconds: int = Field(alias="MAX_BATCH_WAIT_SECONDS", default=3600, ge=1, le=1209600)
    # A provider's daily quota where the contract differs from the documented one (fanout.quotas): requests
    # and imported contacts per UTC day; unset: the documented figures, 0: no limit.
    daily_request_quota: int | None = Field(alias="DAILY_REQUEST_QUOTA", default=None, ge=0)
    daily_contact_quota: int | None = Field(alias="DAILY_CONTACT_QUOTA", default=None, ge=0)


class DeadLetterConfig(CommonConfig, HandsOverSettles):
    pass


C = TypeVar("C", bound=_Env)


class ConfigError(RuntimeError):
    """A function's environment is incomplete or wrong; the message names every bad variable."""


def load[C: _Env](model: type[C], environ: Mapping[str, str] | None = None) -> C:
    """Validate the environment into `model`, raising ConfigError that names each bad variable."""
    env = os.environ if environ is None else environ
    try:
        return model.model_validate(dict(env))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{model.__name__} is misconfigured: {problems}") from exc
