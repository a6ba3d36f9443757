"""One Logger, Tracer and Metrics for every function (Powertools), created once per container."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="journey-fanout")
tracer = Tracer(service="journey-fanout")
metrics = Metrics(namespace="JourneyFanout", service="journey-fanout")
