"""End to end through the local stack and the emulators: every row accounted for, nobody enrolled twice.

Each test drops its own file (so its own job) on one shared stack; faults are set on the emulators for
the test and cleared after it.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from fanout_local.stack import LocalStack, StackSettings
from tests.support import EMULATOR_OF, assert_accounted, enrolments, leaked_log_lines, rows_csv

pytestmark = pytest.mark.integration

TARGETS = {
    "mateo": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
    "mateo-message": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
    "symplify": "1002",
    "workshop": "jrn_welcome",
    "altcraft": "42",
}


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    settings = StackSettings(
        stack_name="e2e",
        visibility_timeout=2,
        concurrency=2,
        # A 2 s backoff cap, so that a Retry-After of a few seconds already counts as a long (quota)
        # wait; Symplify batches polled every second.
        function_env={"CHUNK_LEASE_SECONDS": "4", "MAX_BACKOFF_SECONDS": "2", "BATCH_POLL_SECONDS": "1"},
        # The 4 s lease (for the crash tests) must outlast an invocation, as fanout/sizing.py holds the
        # deployed lease to: Mateo messages, a paced call a row, are left unpaced here. A taken-over
        # message chunk is uncertain, not resent (Mateo messages do not de-duplicate).
        parameters={"RatePerSecondMateoMessage": "0"},
    )
    with LocalStack(settings) as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults(stack: LocalStack) -> Iterator[None]:
    yield
    for emulator in ("mateo", "symplify", "workshop", "altcraft"):
        stack.set_faults(emulator, {})


def contacts_csv(tmp_path: Path, name: str, count: int, *, bad: int = 0, columns: str = "") -> Path:
    """`count` valid contacts (unique to `name`) and `bad` rows with a broken email, as a CSV file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "first_name", "last_name", "plan", *([c for c in columns.split(",") if c])])
    for i in range(count):
        extra = ["Welcome", f"Hello {i}"] if columns else []
        writer.writerow([f"{name}.{i}@example.com", f"First{i}", f"Last{i}", "gold", *extra])
    for i in range(bad):
        writer.writerow(
            [f"broken-{i}-at-example.com", "Bad", "Row", "none", *(["x", "y"] if columns else [])]
        )
    path = tmp_path / f"{name}.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def options_for(destination: str) -> dict[str, str]:
    return {"subject": "Hello"} if destination == "mateo-message" else {}


@pytest.mark.parametrize("destination", list(TARGETS))
def test_clean_run_enrols_every_valid_contact_once_and_rejects_the_rest(
    stack: LocalStack, tmp_path: Path, destination: str
) -> None:
    name = f"clean-{destination}"
    count = {"mateo": 1203, "workshop": 2100, "altcraft": 300, "symplify": 500, "mateo-message": 30}[
        destination
    ]
    columns = "subject,text" if destination == "mateo-message" else ""
    path = contacts_csv(tmp_path, name, count, bad=3, columns=columns)
    job = stack.wait(
        stack.drop(path, destination, TARGETS[destination], options_for(destination)), timeout=180
    )
    summary = job.summary()
    assert summary["status"] == "completed", summary
    assert (summary["rows_read"], summary["rows_sent"], summary["rows_rejected"]) == (count + 3, count, 3)
    assert_accounted(summary)
    got = enrolments(stack, EMULATOR_OF[destination], TARGETS[destination], name)
    assert len(got) == count and set(got.values()) == {1}
    rows = rows_csv(stack, job.job_id)
    assert [int(r["row"]) for r in rows] == list(range(1, count + 4))
    sent = {r["identity"] for r in rows if r["state"] == "sent"}
    assert sent == set(got)
    assert {r["answer"] for r in rows if r["state"] == "rejected"} == {
        f"'broken-{i}-at-example.com' is not a valid email address" for i in range(3)
    }


def test_provider_limits_shape_the_chunks(stack: LocalStack, tmp_path: Path) -> None:
    job = stack.wait(stack.drop(contacts_csv(tmp_path, "limits", 1001), "mateo", TARGETS["mateo"]))
    assert job.chunks_total == 3  # 500 + 500 + 1: Mateo's documented 500 items a call
    job = stack.wait(stack.drop(contacts_csv(tmp_path, "limits-ws", 2001), "workshop", TARGETS["workshop"]))
    assert job.chunks_total == 3  # 1000 + 1000 + 1: Workshop's 1000 contact emails a call


def test_duplicate_object_created_event_makes_no_second_job(stack: LocalStack, tmp_path: Path) -> None:
    path = contacts_csv(tmp_path, "dupe-event", 40)
    job_id = stack.drop(path, "altcraft", TARGETS["altcraft"])
    stack.wait(job_id)
    key = f"inbox/altcraft/{TARGETS['altcraft']}/{path.name}"
    head = stack.client("s3").head_object(Bucket=stack.bucket, Key=key)
    event = {
        "version": "0",
        "id": "replayed-event",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-26T00:00:00Z",
        "region": "eu-west-1",
        "resources": [f"arn:aws:s3:::{stack.bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": stack.bucket},
            "object": {
                "key": key,
                "size": head["ContentLength"],
                "etag": head["ETag"].strip('"'),
                "version-id": head["VersionId"],
            },
            "request-id": "r",
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }
    sqs = stack.client("sqs")
    for _ in range(2):  # the same event delivered twice more, as EventBridge may
        sqs.send_message(QueueUrl=stack.splitter_events_url, MessageBody=json.dumps(event))
    direct = {
        "Records": [
            {"s3": {"bucket": {"name": stack.bucket}, "object": {"key": key, "versionId": head["VersionId"]}}}
        ]
    }
    sqs.send_message(QueueUrl=stack.splitter_events_url, MessageBody=json.dumps(direct))
    _wait_quiet(stack)
    jobs = [j for j in stack.store().list_jobs(200) if j.key == key]
    assert [j.job_id for j in jobs] == [job_id]
    got = enrolments(stack, "altcraft", TARGETS["altcraft"], "dupe-event")
    assert len(got) == 40 and set(got.values()) == {1}


def _wait_quiet(stack: LocalStack, seconds: float = 4.0) -> None:
    """Let the runner drain what was just queued (the splitter queue is polled every second)."""
    import time

    deadline = time.time() + 30
    sqs = stack.client("sqs")
    while time.time() < deadline:
        attrs = sqs.get_queue_attributes(
            QueueUrl=stack.splitter_events_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if (
            attrs["ApproximateNumberOfMessages"] == "0"
            and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
        ):
            break
        time.sleep(0.3)
    time.sleep(seconds)


@pytest.mark.parametrize("destination", ["mateo", "workshop"])
def test_lost_responses_are_resent_and_the_provider_deduplicates(
    stack: LocalStack, tmp_path: Path, destination: str
) -> None:
    stack.set_faults(EMULATOR_OF[destination], {"lost_response": 0.3, "seed": 11})
    name = f"lost-{destination}"
    count = {"mateo": 1500, "workshop": 2500}[destination]
    path = contacts_csv(tmp_path, name, count)
    job = stack.wait(stack.drop(path, destination, TARGETS[destination]), timeout=240)
    assert job.status.value == "completed", job.summary()
    got = enrolments(stack, EMULATOR_OF[destination], TARGETS[destination], name)
    assert len(got) == count and set(got.values()) == {1}


@pytest.mark.parametrize("fault", ["lost_response", "5xx_after"])
@pytest.mark.parametrize("destination", ["altcraft", "symplify", "mateo-message"])
def test_lost_response_without_provider_dedup_is_uncertain_not_resent(
    stack: LocalStack, tmp_path: Path, destination: str, fault: str
) -> None:
    # 5xx_after: the provider acts, then answers 500/502/503 — which no document says means "not done".
    stack.set_faults(EMULATOR_OF[destination], {fault: 1.0, "seed": 3})
    name = f"uncertain-{fault}-{destination}"
    columns = "subject,text" if destination == "mateo-message" else ""
    count = 25
    path = contacts_csv(tmp_path, name, count, columns=columns)
    job = stack.wait(
        stack.drop(path, destination, TARGETS[destination], options_for(destination)), timeout=120
    )
    summary = job.summary()
    assert summary["status"] == "completed_with_errors"
    assert summary["rows_uncertain"] == count and summary["rows_sent"] == 0
    assert_accounted(summary)
    got = enrolments(stack, EMULATOR_OF[destination], TARGETS[destination], name)
    assert len(got) == count and set(got.values()) == {1}  # reached the provider once, never resent
    assert all("redrive" in r["answer"] for r in rows_csv(stack, job.job_id))


@pytest.mark.parametrize("destination", ["mateo", "mateo-message"])
def test_a_mateo_id_written_without_dashes_in_upper_case_reaches_mateo_canonical(
    stack: LocalStack, tmp_path: Path, destination: str
) -> None:
    name = f"upper-{destination}"
    columns = "subject,text" if destination == "mateo-message" else ""
    path = contacts_csv(tmp_path, name, 3, columns=columns)
    written = TARGETS[destination].replace("-", "").upper()
    job = stack.wait(stack.drop(path, destination, written, options_for(destination)), timeout=120)
    assert job.status.value == "completed", job.summary()
    assert job.target == TARGETS[destination]
    got = enrolments(stack, EMULATOR_OF[destination], TARGETS[destination], name)
    assert len(got) == 3 and set(got.values()) == {1}


@pytest.mark.parametrize(
    ("matching", "options", "identity"),
    [
        ("email", {}, lambda i: f"altmode-email.{i}@example.com"),
        ("email_profile", {}, lambda i: f"altmode-email_profile.{i}@example.com"),
        ("phone", {}, lambda i: f"+4670123{i:04d}"),
        ("profile_id", {}, lambda i: f"{i:024x}"),
        ("custom", {"field-name": "CRM_ID"}, lambda i: f"crm-{i:05d}"),
    ],
)
def test_every_altcraft_matching_mode_reaches_the_emulator_as_seed_003_words_it(
    stack: LocalStack, tmp_path: Path, matching: str, options: dict[str, str], identity: Callable[[int], str]
) -> None:
    # The client and the emulator hold the same reading of seed 003 (phone and profile_id beside data).
    path = tmp_path / f"altmode-{matching}.csv"
    lines = ["email,phone,profile_id,CRM_ID"]
    for i in range(5):
        lines.append(f"altmode-{matching}.{i}@example.com,+4670123{i:04d},{i:024x},crm-{i:05d}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    job = stack.wait(
        stack.drop(path, "altcraft", TARGETS["altcraft"], {"matching": matching, **options}), 120
    )
    assert job.status.value == "completed", job.summary()
    received = stack.received("altcraft")["targets"].get(TARGETS["altcraft"], {})
    for i in range(5):
        assert received.get(identity(i)) == 1, (matching, identity(i))


def test_one_unknown_workshop_list_fails_only_its_own_row(stack: LocalStack, tmp_path: Path) -> None:
    path = tmp_path / "lists.csv"
    path.write_text(
        "list_email\nteam@company.com\nnonexistent@company.com\nengineering@company.com\n", encoding="utf-8"
    )
    job = stack.wait(stack.drop(path, "workshop", TARGETS["workshop"]), timeout=120)
    rows = {r["row"]: r for r in rows_csv(stack, job.job_id)}
    assert {n: r["state"] for n, r in rows.items()} == {"1": "sent", "2": "failed", "3": "sent"}, rows
    assert "No list found with email address: nonexistent@company.com" in rows["2"]["answer"]
    received = stack.received("workshop")["targets"].get(TARGETS["workshop"], {})
    assert {"alice@company.com", "bob@company.com", "carol@company.com"} <= set(received)


def test_throttling_with_retry_after_is_waited_out(stack: LocalStack, tmp_path: Path) -> None:
    stack.set_faults("mateo", {"429": 0.5, "retry_after": 1, "seed": 5})
    path = contacts_csv(tmp_path, "throttled", 2600)
    job = stack.wait(stack.drop(path, "mateo", TARGETS["mateo"]), timeout=240)
    assert job.status.value == "completed"
    got = enrolments(stack, "mateo", TARGETS["mateo"], "throttled")
    assert len(got) == 2600 and set(got.values()) == {1}


def test_permanent_provider_error_fails_rows_without_retrying(stack: LocalStack, tmp_path: Path) -> None:
    before = stack.received("workshop")["requests"]
    path = contacts_csv(tmp_path, "draft", 10)
    job = stack.wait(stack.drop(path, "workshop", "jrn_draft"), timeout=60)
    summary = job.summary()
    assert summary["status"] == "failed" and summary["rows_failed"] == 10
    assert stack.received("workshop")["requests"] - before == 1  # 422 is final: one call, no retry
    answers = {r["answer"] for r in rows_csv(stack, job.job_id)}
    assert answers == {"HTTP 422: Journey must be in 'on' state to enroll people. Current state: draft"}


def test_logs_hold_no_email_phone_or_token(stack: LocalStack, tmp_path: Path) -> None:
    path = tmp_path / "pii.csv"
    path.write_text(
        "email,phone,first_name\nsecret.person@example.com,+46701234599,Secret\nbad-email,+4670,X\n"
    )
    stack.wait(stack.drop(path, "mateo", TARGETS["mateo"], {"tolerated-invalid-percent": "60"}))
    scanned, leaks = leaked_log_lines(stack.log_dir)
    assert leaks == []
    assert scanned > 10  # the scan read real logs


@pytest.mark.parametrize(
    ("destination", "expected"), [("mateo", "completed"), ("altcraft", "completed_with_errors")]
)
def test_sender_killed_mid_call_neither_loses_nor_doubles_contacts(
    stack: LocalStack, tmp_path: Path, destination: str, expected: str
) -> None:
    import time

    emulator = EMULATOR_OF[destination]
    # Slow, but inside Mateo's 2-second request timeout: the provider does perform the call it holds.
    stack.set_faults(emulator, {"latency_ms": 1500})
    before = stack.received(emulator)["requests"]
    name = f"killed-{destination}"
    job_id = stack.drop(contacts_csv(tmp_path, name, 30), destination, TARGETS[destination])
    deadline = time.time() + 30
    while stack.received(emulator)["requests"] == before and time.time() < deadline:
        time.sleep(0.05)  # the provider has the request now; the sender waits for the answer
    for worker in stack.workers[f"{destination.capitalize()}SenderFunction"]:
        worker.kill()  # the sender dies before it can record the provider's answer
    stack.set_faults(emulator, {})
    job = stack.wait(job_id, timeout=120)
    assert job.status.value == expected, job.summary()
    assert_accounted(job.summary())
    got = enrolments(stack, emulator, TARGETS[destination], name)
    assert max(got.values(), default=1) == 1  # nobody twice
    if destination == "altcraft":  # no de-duplication there: may or may not have arrived; never resent
        assert job.counts.uncertain == 30
    else:  # Mateo de-duplicates: resent after the crash, everyone arrives exactly once
        assert len(got) == 30


def test_a_users_eventbridge_rule_receives_job_completed_and_job_failed(
    stack: LocalStack, tmp_path: Path
) -> None:
    events, sqs = stack.client("events"), stack.client("sqs")
    bus = stack.outputs()["EventBusName"]
    queue = sqs.create_queue(QueueName="user-job-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["journey-fanout"], "detail-type": ["JobCompleted", "JobFailed"]}
    events.put_rule(Name="user-rule", EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule="user-rule", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    done = stack.wait(stack.drop(contacts_csv(tmp_path, "evented", 7), "altcraft", TARGETS["altcraft"]))
    failed = stack.wait(stack.drop(contacts_csv(tmp_path, "evented-draft", 2), "workshop", "jrn_draft"))
    seen: dict[str, dict[str, object]] = {}
    deadline = time.time() + 20
    while len(seen) < 2 and time.time() < deadline:
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            event = json.loads(message["Body"])
            seen[event["detail"]["job_id"]] = event
    assert seen[done.job_id]["detail-type"] == "JobCompleted"
    assert seen[done.job_id]["detail"]["rows_sent"] == 7
    assert seen[failed.job_id]["detail-type"] == "JobFailed"
    assert seen[failed.job_id]["detail"]["rows_failed"] == 2
    assert "@" not in json.dumps(seen[done.job_id]["detail"])  # counts and ids, no contact data


def test_a_chunk_refused_as_too_large_is_split_in_halves_until_each_fits(
    stack: LocalStack, tmp_path: Path
) -> None:
    admin = stack.emulator_admin("altcraft")
    httpx.post(f"{admin}/_emulator/seed", json={"max_body_bytes": 3000}, timeout=10).raise_for_status()
    try:
        job = stack.wait(stack.drop(contacts_csv(tmp_path, "too-large", 60), "altcraft", TARGETS["altcraft"]))
    finally:
        httpx.post(f"{admin}/_emulator/seed", json={"max_body_bytes": 10 * 1024 * 1024}, timeout=10)
    assert job.status.value == "completed", job.summary()
    assert job.counts.sent == 60
    assert job.chunks_total > 3  # one chunk, then halves (and halves of halves) until each fits
    got = enrolments(stack, "altcraft", TARGETS["altcraft"], "too-large")
    assert len(got) == 60
    assert set(got.values()) == {1}
    assert [int(r["row"]) for r in rows_csv(stack, job.job_id)] == list(range(1, 61))


def seed_symplify_journey(stack: LocalStack, journey: str, **settings: object) -> None:
    """A journey of the demo customer at the Symplify emulator (batch_outcome, batch_polls_until_done) whose
    trigger answers a batchId (a named emulator option: no document shows one) for the sender to follow."""
    settings = {"name": f"e2e {journey}", "trigger_answers_batch_id": True, **settings}
    seed = {"customers": {"demo": {"journeys": {journey: settings}}}}
    httpx.post(f"{stack.emulator_admin('symplify')}/_emulator/seed", json=seed, timeout=10).raise_for_status()


def symplify_batches(stack: LocalStack, journey: str) -> list[dict[str, object]]:
    """Every batch the Symplify emulator started for `journey`, with how often its status was read."""
    return [b for b in stack.received("symplify")["batches"] if b["entityId"] == journey]


def test_a_symplify_batch_that_ends_in_error_fails_its_rows_with_the_providers_reason(
    stack: LocalStack, tmp_path: Path
) -> None:
    seed_symplify_journey(stack, "2001", batch_outcome="ERROR")
    job = stack.wait(stack.drop(contacts_csv(tmp_path, "batch-error", 20), "symplify", "2001"), timeout=60)
    summary = job.summary()
    assert summary["status"] == "failed", summary  # no row could be sent
    assert (summary["rows_failed"], summary["rows_sent"], summary["rows_uncertain"]) == (20, 0, 0)
    assert_accounted(summary)
    (batch,) = symplify_batches(stack, "2001")  # triggered once, never again
    assert batch["polls"] == 1
    answers = {r["answer"] for r in rows_csv(stack, job.job_id)}
    assert answers == {
        f"Symplify batch {batch['batchId']} ended in ERROR; not started again automatically (part of it may"
        " have run) — check the journey at symplify, then `fanout redrive` starts a new batch"
    }
    assert enrolments(stack, "symplify", "2001", "batch-error") == {}


def test_a_symplify_batch_is_sent_once_its_status_says_finished(stack: LocalStack, tmp_path: Path) -> None:
    seed_symplify_journey(stack, "2002", batch_polls_until_done=3)
    job = stack.wait(stack.drop(contacts_csv(tmp_path, "batch-slow", 20), "symplify", "2002"), timeout=60)
    assert job.status.value == "completed", job.summary()
    assert job.counts.sent == 20
    (batch,) = symplify_batches(stack, "2002")
    assert batch["polls"] == 4  # STARTED three times, then FINISHED
    assert {(r["state"], r["answer"]) for r in rows_csv(stack, job.job_id)} == {
        ("sent", f"in Symplify batch {batch['batchId']}")
    }
    got = enrolments(stack, "symplify", "2002", "batch-slow")
    assert len(got) == 20 and set(got.values()) == {1}


# Slow (about 43 s on two cores): marked so the default run stays under ten minutes; CI runs it
# with the slow suites.
@pytest.mark.slow
def test_a_used_up_daily_quota_is_waited_out_and_the_job_completes(stack: LocalStack, tmp_path: Path) -> None:
    # Mateo's quota clock frozen 6 s before a UTC midnight and the emulator's named option that adds a
    # Retry-After to its limits' 429s (no document shows one; without it the sender waits for the next
    # UTC day by its own clock: tests/unit/test_quotas.py): every refusal says Retry-After: 6, more than
    # the sender's backoff cap (2 s) and its in-invocation limit (5 s). The day ends when the test says.
    clock = f"{stack.emulator_admin('mateo')}/_emulator/clock"
    httpx.post(clock, json={"now": "2030-01-01T23:59:54Z"}, timeout=10).raise_for_status()
    try:
        stack.set_faults("mateo", {"daily_requests": 2, "limit_retry_after": 1})
        before = stack.received("mateo")["requests"]
        job_id = stack.drop(contacts_csv(tmp_path, "quota", 1001), "mateo", TARGETS["mateo"])  # 3 chunks
        notes: set[str] = set()
        deadline = time.time() + 150
        # Two chunks go through; the third is refused again and again, more often than the queue's
        # maxReceiveCount (5) would allow one message.
        while stack.received("mateo")["requests"] - before < 2 + 6 and time.time() < deadline:
            seen = stack.store().get_job(job_id)
            if seen is not None and seen.message:
                notes.add(seen.message)
            time.sleep(0.5)
        refused = stack.received("mateo")["requests"] - before - 2
        assert refused >= 6
        waiting = stack.store().get_job(job_id)
        assert waiting is not None and waiting.status.value == "sending", waiting.summary()
        assert waiting.counts.failed == 0  # nothing dead-lettered
        httpx.post(clock, json={"advance_seconds": 10}, timeout=10).raise_for_status()  # a new UTC day
        job = stack.wait(job_id, timeout=60)
    finally:
        httpx.post(clock, json={"now": None}, timeout=10).raise_for_status()
    assert job.status.value == "completed", job.summary()
    assert (job.counts.sent, job.message) == (1001, "")
    assert any(
        n.startswith("waiting for mateo's quota until ") and "daily limit of 2 requests reached" in n
        for n in notes
    ), notes
    # One request per delivery that claimed a chunk: no refusal was retried inside an invocation.
    assert (
        sum(c.attempts for c in stack.store().chunks(job_id)) == stack.received("mateo")["requests"] - before
    )
    got = enrolments(stack, "mateo", TARGETS["mateo"], "quota")
    assert len(got) == 1001 and set(got.values()) == {1}


def test_no_call_of_any_function_was_denied_by_iam(stack: LocalStack) -> None:
    """Runs last in this module: every destination's flow above ran under enforced IAM, each function
    with its own role, and none of their calls needed a permission the template does not grant."""
    stats = stack.aws_stats()

    assert stats["iam_enforced"] is True
    assert stats["access_denied"] == 0, stats["access_denied_by_action"]
