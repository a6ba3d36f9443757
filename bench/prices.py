"""AWS list prices the cost benchmark uses: the ONE place they live.

Region: us-east-1 (US East, N. Virginia). Prices as published on the AWS pricing pages in 2025 (DynamoDB
on-demand after the 1 November 2024 price reduction); on-demand rates, first pricing tier, free tiers
ignored, no Savings Plans. Check them against https://aws.amazon.com/pricing/ before quoting a bill:
eu-west-1 is a few percent dearer for some services (DynamoDB on-demand: $0.7063 per million writes).

Every price is in US dollars for ONE unit of what `bench.counting.Usage` counts.
"""

from __future__ import annotations

from typing import Final

PRICES_REGION: Final = "us-east-1"
PRICES_AS_OF: Final = "2025 (AWS pricing pages; DynamoDB on-demand after the 2024-11-01 reduction)"

# Lambda, arm64 (the template's Architectures), first 7.5 billion GB-s a month.
LAMBDA_ARM_PER_GB_SECOND: Final = 0.0000133334
LAMBDA_PER_REQUEST: Final = 0.20 / 1_000_000

# SQS standard queues: per request, each 64 KB chunk of payload a request (first 100 billion a month).
SQS_PER_REQUEST: Final = 0.40 / 1_000_000

# S3 Standard requests.
S3_PER_PUT_REQUEST: Final = 0.005 / 1_000  # PUT, COPY, POST, LIST
S3_PER_GET_REQUEST: Final = 0.0004 / 1_000  # GET, SELECT and all other requests (HEAD)

# DynamoDB on-demand (Standard table class).
DYNAMODB_PER_WRITE_UNIT: Final = 0.625 / 1_000_000
DYNAMODB_PER_READ_UNIT: Final = 0.125 / 1_000_000

# EventBridge custom events put on a bus (each 64 KB chunk of an entry is one event).
EVENTBRIDGE_PER_EVENT: Final = 1.00 / 1_000_000

# Secrets Manager API calls (the secret's $0.40 a month is a fixed cost, not per contact).
SECRETS_PER_CALL: Final = 0.05 / 10_000

# Data transfer out of AWS to the internet (the provider calls' request bodies), first 10 TB a month,
# per GB of 2**30 bytes. Answers coming back are data transfer in: free.
EGRESS_PER_GB: Final = 0.09
