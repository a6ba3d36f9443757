"""template.yaml keeps the promises the product rests on: least privilege, no lost messages, one
sender per destination, private encrypted storage, and a clean cfn-lint.

The rules read the template as CloudFormation hands it to the SAM transform: with its
AWS::LanguageExtensions expanded (fanout_local.sam_deploy_prep), so the destinations' one
definition is checked once per destination.

Each rule is a function that returns the problems it finds, so the same rule is run on the real
template (expecting none) and on a template with a planted fault (expecting it to be found).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from fanout_local import cfn_yaml
from fanout_local.sam_deploy_prep import expand_language_extensions

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"

DESTINATIONS = ("mateo", "mateo-message", "symplify", "workshop", "altcraft")

# SAM policy templates whose definitions list explicit actions on named resources. Anything else
# in a function's Policies must be an inline document, which the wildcard rule then reads.
# (SQSSendMessagePolicy grants `sqs:SendMessage*`: SendMessage and SendMessageBatch.)
VETTED_POLICY_TEMPLATES = frozenset(
    {
        "AWSSecretsManagerGetSecretValuePolicy",
        "DynamoDBCrudPolicy",
        "DynamoDBReadPolicy",
        "DynamoDBWritePolicy",
        "EventBridgePutEventsPolicy",
        "S3CrudPolicy",
        "S3ReadPolicy",
        "S3WritePolicy",
        "SQSPollerPolicy",
        "SQSSendMessagePolicy",
    }
)

Template = dict[str, Any]


def load_template(path: Path) -> Template:
    """The template at `path` as the SAM transform receives it: language extensions expanded."""
    return expand_language_extensions(cfn_yaml.load_template(path))


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(TEMPLATE_PATH)


# ------------------------------------------------------------------------------------------------
# Reading the template
# ------------------------------------------------------------------------------------------------


def resources_of(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }


def function_properties(template: Template, name: str) -> dict[str, Any]:
    """A function's properties with Globals.Function applied (environment variables merged)."""
    defaults = template.get("Globals", {}).get("Function", {})
    own = template["Resources"][name].get("Properties", {})
    merged = {**copy.deepcopy(defaults), **copy.deepcopy(own)}
    variables = {
        **defaults.get("Environment", {}).get("Variables", {}),
        **own.get("Environment", {}).get("Variables", {}),
    }
    if variables:
        merged["Environment"] = {"Variables": variables}
    return merged


def target_of(value: Any) -> str | None:
    """The logical id behind `!Ref X` or `!GetAtt X.Attr`, else None."""
    if isinstance(value, dict):
        ref = value.get("Ref")
        if isinstance(ref, str):
            return ref
        get_att = value.get("Fn::GetAtt")
        if isinstance(get_att, list) and get_att:
            return str(get_att[0])
    return None


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) pair below `node`, depth first."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def sub_text(value: Any) -> str | None:
    """The text of an Fn::Sub with its literal variables filled in (CloudFormation's pseudo parameters
    and resource attributes stay `${...}`); None when `value` is no Fn::Sub."""
    sub = value.get("Fn::Sub") if isinstance(value, dict) else None
    if isinstance(sub, str):
        return sub
    if isinstance(sub, list) and len(sub) == 2 and isinstance(sub[0], str):
        text = sub[0]
        for name, variable in sub[1].items():
            if isinstance(variable, str | int):
                text = text.replace(f"${{{name}}}", str(variable))
        return text
    return None


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def sqs_event_sources(template: Template) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    """(function, event name, queue logical id, event properties) for every SQS event source."""
    found: list[tuple[str, str, str | None, dict[str, Any]]] = []
    for name in resources_of(template, "AWS::Serverless::Function"):
        events = template["Resources"][name].get("Properties", {}).get("Events", {})
        for event_name, event in events.items():
            if event.get("Type") == "SQS":
                properties = event.get("Properties", {})
                found.append((name, event_name, target_of(properties.get("Queue")), properties))
    for name, mapping in resources_of(template, "AWS::Lambda::EventSourceMapping").items():
        properties = mapping.get("Properties", {})
        queue = target_of(properties.get("EventSourceArn"))
        if queue in resources_of(template, "AWS::SQS::Queue"):
            found.append((str(target_of(properties.get("FunctionName"))), name, queue, properties))
    return found


def senders(template: Template) -> dict[str, str]:
    """Logical id -> DESTINATION, for every function that has one."""
    found: dict[str, str] = {}
    for name in resources_of(template, "AWS::Serverless::Function"):
        variables = function_properties(template, name).get("Environment", {}).get("Variables", {})
        if "DESTINATION" in variables:
            found[name] = variables["DESTINATION"]
    return found


def dead_letter_targets(template: Template) -> set[str]:
    """Queues that receive what failed elsewhere: redrive targets and on-failure destinations."""
    targets: set[str] = set()
    for path, value in walk(template.get("Resources", {})):
        key = path.rsplit("/", 1)[-1]
        if key == "deadLetterTargetArn" or path.endswith(("/DeadLetterConfig/Arn", "/OnFailure/Destination")):
            target = target_of(value)
            if target:
                targets.add(target)
    return targets


# ------------------------------------------------------------------------------------------------
# The loader reads CloudFormation's short tags as their long forms
# ------------------------------------------------------------------------------------------------

_SHORT_TAGS = """
AWSTemplateFormatVersion: 2010-09-09
Values:
  ref: !Ref Bucket
  sub: !Sub "${AWS::StackName}-inbox"
  sub_list: !Sub ["${Name}-x", {Name: !Ref Bucket}]
  get_att: !GetAtt Db.Endpoint.Address
  get_att_list: !GetAtt [Queue, Arn]
  if: !If [IsProd, !Ref Big, !Ref AWS::NoValue]
  equals: !Equals [!Ref Env, prod]
  not: !Not [!Condition IsProd]
  and: !And [!Condition A, !Condition B]
  or: !Or [!Condition A, !Condition B]
  select: !Select [0, !GetAZs ""]
  split: !Split [",", "a,b"]
  join: !Join ["-", [a, b]]
  find_in_map: !FindInMap [Map, Key, Value]
  import_value: !ImportValue shared-vpc
  base64: !Base64 "hello"
  cidr: !Cidr ["10.0.0.0/16", 4, 8]
"""


def test_loader_expands_every_short_tag() -> None:
    document = cfn_yaml.loads_template(_SHORT_TAGS)
    assert document["AWSTemplateFormatVersion"] == "2010-09-09"
    assert document["Values"] == {
        "ref": {"Ref": "Bucket"},
        "sub": {"Fn::Sub": "${AWS::StackName}-inbox"},
        "sub_list": {"Fn::Sub": ["${Name}-x", {"Name": {"Ref": "Bucket"}}]},
        "get_att": {"Fn::GetAtt": ["Db", "Endpoint.Address"]},
        "get_att_list": {"Fn::GetAtt": ["Queue", "Arn"]},
        "if": {"Fn::If": ["IsProd", {"Ref": "Big"}, {"Ref": "AWS::NoValue"}]},
        "equals": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
        "not": {"Fn::Not": [{"Condition": "IsProd"}]},
        "and": {"Fn::And": [{"Condition": "A"}, {"Condition": "B"}]},
        "or": {"Fn::Or": [{"Condition": "A"}, {"Condition": "B"}]},
        "select": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        "split": {"Fn::Split": [",", "a,b"]},
        "join": {"Fn::Join": ["-", ["a", "b"]]},
        "find_in_map": {"Fn::FindInMap": ["Map", "Key", "Value"]},
        "import_value": {"Fn::ImportValue": "shared-vpc"},
        "base64": {"Fn::Base64": "hello"},
        "cidr": {"Fn::Cidr": ["10.0.0.0/16", 4, 8]},
    }


def test_loader_leaves_plain_yaml_loading_untouched() -> None:
    cfn_yaml.loads_template(_SHORT_TAGS)  # the loader's tags must not leak into yaml's own SafeLoader
    assert isinstance(yaml.safe_load("day: 2010-09-09")["day"], date)


# ------------------------------------------------------------------------------------------------
# The rules
# ------------------------------------------------------------------------------------------------


def wildcard_allows(template: Template) -> list[str]:
    """Allow statements whose actions are `*`, `service:*` or a NotAction, and unvetted policies."""
    problems: list[str] = []
    for path, node in walk(template.get("Resources", {})):
        if not isinstance(node, dict) or "Statement" not in node:
            continue
        for index, statement in enumerate(as_list(node["Statement"])):
            if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
                continue
            where = f"{path}/Statement[{index}]"
            if "NotAction" in statement:
                problems.append(f"{where}: Allow with NotAction")
            for action in as_list(statement.get("Action", [])):
                if not isinstance(action, str):
                    problems.append(f"{where}: action {action!r} is not a literal")
                elif action == "*" or action.endswith(":*"):
                    problems.append(f"{where}: Allow {action}")
    for name in resources_of(template, "AWS::Serverless::Function"):
        for policy in as_list(template["Resources"][name].get("Properties", {}).get("Policies", [])):
            if isinstance(policy, str):
                problems.append(f"{name}: managed policy {policy} (use a SAM policy template)")
            elif isinstance(policy, dict) and "Statement" not in policy:
                unvetted = set(policy) - VETTED_POLICY_TEMPLATES
                problems.extend(f"{name}: unvetted policy template {key}" for key in sorted(unvetted))
    return problems


def queues_without_redrive(template: Template) -> list[str]:
    dead_letters = dead_letter_targets(template)
    problems: list[str] = []
    for name, queue in resources_of(template, "AWS::SQS::Queue").items():
        if name in dead_letters:
            continue
        redrive = queue.get("Properties", {}).get("RedrivePolicy")
        if not isinstance(redrive, dict) or not target_of(redrive.get("deadLetterTargetArn")):
            problems.append(f"{name}: no RedrivePolicy to a dead-letter queue")
        elif not 1 <= int(redrive.get("maxReceiveCount", 0)) <= 10:
            problems.append(f"{name}: maxReceiveCount {redrive.get('maxReceiveCount')!r} outside 1..10")
    return problems


def sources_without_partial_failures(template: Template) -> list[str]:
    return [
        f"{function}/{event}: no ReportBatchItemFailures"
        for function, event, _, properties in sqs_event_sources(template)
        if "ReportBatchItemFailures" not in properties.get("FunctionResponseTypes", [])
    ]


def short_visibility_timeouts(template: Template) -> list[str]:
    queues = resources_of(template, "AWS::SQS::Queue")
    problems: list[str] = []
    for function, event, queue, _ in sqs_event_sources(template):
        if queue not in queues:
            problems.append(f"{function}/{event}: queue {queue!r} is not a queue of this template")
            continue
        visibility = int(queues[queue].get("Properties", {}).get("VisibilityTimeout", 30))
        timeout = int(function_properties(template, function).get("Timeout", 3))
        if visibility < 6 * timeout:
            problems.append(f"{queue}: VisibilityTimeout {visibility} < 6 x {function} Timeout {timeout}")
    return problems


def senders_without_parameter_concurrency(template: Template) -> list[str]:
    parameters = template.get("Parameters", {})
    problems: list[str] = []
    sources = sqs_event_sources(template)
    for name in senders(template):
        own = [properties for function, _, _, properties in sources if function == name]
        if len(own) != 1:
            problems.append(f"{name}: {len(own)} SQS event sources, expected exactly one")
            continue
        maximum = own[0].get("ScalingConfig", {}).get("MaximumConcurrency")
        parameter = maximum.get("Ref") if isinstance(maximum, dict) else None
        if parameter not in parameters:
            problems.append(f"{name}: ScalingConfig.MaximumConcurrency is not a !Ref to a parameter")
        elif int(parameters[parameter].get("MinValue", 0)) < 2:
            problems.append(f"{name}: parameter {parameter} allows less than Lambda's minimum of 2")
    return problems


def destinations_without_dead_letter_alarm(template: Template) -> list[str]:
    queues = resources_of(template, "AWS::SQS::Queue")
    alarmed: set[str] = set()
    for alarm in resources_of(template, "AWS::CloudWatch::Alarm").values():
        properties = alarm.get("Properties", {})
        if (
            properties.get("Namespace") == "AWS/SQS"
            and properties.get("MetricName") == "ApproximateNumberOfMessagesVisible"
            and properties.get("ComparisonOperator") == "GreaterThanThreshold"
            and float(properties.get("Threshold", -1)) == 0
            and "AlarmActions" in properties
        ):
            alarmed.update(
                str(target_of(dimension.get("Value")))
                for dimension in properties.get("Dimensions", [])
                if dimension.get("Name") == "QueueName"
            )
    problems: list[str] = []
    sources = sqs_event_sources(template)
    for name, destination in senders(template).items():
        for _, _, queue, _ in (source for source in sources if source[0] == name):
            redrive = queues.get(str(queue), {}).get("Properties", {}).get("RedrivePolicy", {})
            dead_letter = target_of(redrive.get("deadLetterTargetArn"))
            if dead_letter not in alarmed:
                problems.append(f"{destination}: dead-letter queue {dead_letter!r} has no depth alarm")
    return problems


def bucket_problems(template: Template) -> list[str]:
    problems: list[str] = []
    buckets = resources_of(template, "AWS::S3::Bucket")
    if not buckets:
        return ["no bucket"]
    policies = resources_of(template, "AWS::S3::BucketPolicy").values()
    for name, bucket in buckets.items():
        properties = bucket.get("Properties", {})
        block = properties.get("PublicAccessBlockConfiguration", {})
        for flag in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            if block.get(flag) is not True:
                problems.append(f"{name}: {flag} is not true")
        ownership = properties.get("OwnershipControls", {}).get("Rules", [{}])
        if ownership[0].get("ObjectOwnership") != "BucketOwnerEnforced":
            problems.append(f"{name}: ACLs are not disabled (BucketOwnerEnforced)")
        rules = properties.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        algorithms = {rule.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for rule in rules}
        if not algorithms or not algorithms <= {"AES256", "aws:kms", "aws:kms:dsse"}:
            problems.append(f"{name}: no default encryption")
        if properties.get("VersioningConfiguration", {}).get("Status") != "Enabled":
            problems.append(f"{name}: versioning is not enabled")
        if not any(_denies_plain_http(policy, name) for policy in policies):
            problems.append(f"{name}: no bucket policy denying requests without TLS")
    return problems


def _denies_plain_http(policy: dict[str, Any], bucket: str) -> bool:
    properties = policy.get("Properties", {})
    if target_of(properties.get("Bucket")) != bucket:
        return False
    for statement in as_list(properties.get("PolicyDocument", {}).get("Statement", [])):
        condition = statement.get("Condition", {}).get("Bool", {})
        resources = {str(target_of(r) or r) for r in as_list(statement.get("Resource", []))}
        if (
            statement.get("Effect") == "Deny"
            and statement.get("Principal") in ("*", {"AWS": "*"})
            and "s3:*" in as_list(statement.get("Action"))
            and str(condition.get("aws:SecureTransport")).lower() == "false"
            and len(resources) >= 2  # the bucket and its objects
        ):
            return True
    return False


def table_problems(template: Template) -> list[str]:
    problems: list[str] = []
    tables = resources_of(template, "AWS::DynamoDB::Table")
    if not tables:
        return ["no table"]
    for name, table in tables.items():
        properties = table.get("Properties", {})
        if (
            properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
            is not True
        ):
            problems.append(f"{name}: point-in-time recovery is off")
        ttl = properties.get("TimeToLiveSpecification", {})
        if ttl.get("Enabled") is not True or not ttl.get("AttributeName"):
            problems.append(f"{name}: no TTL attribute")
        if properties.get("SSESpecification", {}).get("SSEEnabled") is not True:
            problems.append(f"{name}: SSESpecification.SSEEnabled is not true")
    return problems


def old_runtimes(template: Template) -> list[str]:
    problems: list[str] = []
    runtimes: list[tuple[str, Any]] = [
        (name, function_properties(template, name).get("Runtime"))
        for name in resources_of(template, "AWS::Serverless::Function")
    ]
    runtimes += [
        (name, function.get("Properties", {}).get("Runtime"))
        for name, function in resources_of(template, "AWS::Lambda::Function").items()
    ]
    for name, layer in resources_of(template, "AWS::Serverless::LayerVersion").items():
        runtimes += [(name, runtime) for runtime in layer.get("Properties", {}).get("CompatibleRuntimes", [])]
    for name, runtime in runtimes:
        match = re.fullmatch(r"python(\d+)\.(\d+)", str(runtime))
        if not match or (int(match[1]), int(match[2])) < (3, 12):
            problems.append(f"{name}: runtime {runtime!r} is not python3.12 or newer")
    return problems


def secrets_from_parameters(template: Template) -> list[str]:
    parameters = set(template.get("Parameters", {}))
    problems = [
        f"parameter {name}: NoEcho suggests a secret passed as a parameter"
        for name, parameter in template.get("Parameters", {}).items()
        if parameter.get("NoEcho")
    ]
    for name, secret in resources_of(template, "AWS::SecretsManager::Secret").items():
        properties = secret.get("Properties", {})
        if "GenerateSecretString" in properties:
            problems.append(f"{name}: GenerateSecretString cannot hold a provider's token")
        for _, value in walk(properties.get("SecretString")):
            if isinstance(value, dict) and value.get("Ref") in parameters:
                problems.append(f"{name}: value comes from parameter {value['Ref']}")
            if isinstance(value, str):
                for used in re.findall(r"\$\{([^}.!]+)\}", value):
                    if used in parameters:
                        problems.append(f"{name}: value comes from parameter {used}")
    return problems


def sender_count_problems(template: Template) -> list[str]:
    counts = Counter(senders(template).values())
    problems = [f"{dest}: {counts[dest]} sender functions" for dest in DESTINATIONS if counts[dest] != 1]
    problems += [f"{dest}: not a destination" for dest in counts if dest not in DESTINATIONS]
    return problems


RULES: dict[str, Callable[[Template], list[str]]] = {
    "wildcard_allows": wildcard_allows,
    "queues_without_redrive": queues_without_redrive,
    "sources_without_partial_failures": sources_without_partial_failures,
    "short_visibility_timeouts": short_visibility_timeouts,
    "senders_without_parameter_concurrency": senders_without_parameter_concurrency,
    "destinations_without_dead_letter_alarm": destinations_without_dead_letter_alarm,
    "bucket_problems": bucket_problems,
    "table_problems": table_problems,
    "old_runtimes": old_runtimes,
    "secrets_from_parameters": secrets_from_parameters,
    "sender_count_problems": sender_count_problems,
}


# ------------------------------------------------------------------------------------------------
# The real template keeps every rule
# ------------------------------------------------------------------------------------------------


def test_no_allow_statement_grants_wildcard_actions(template: Template) -> None:
    assert wildcard_allows(template) == []


def test_every_work_queue_redrives_to_a_dead_letter_queue(template: Template) -> None:
    assert queues_without_redrive(template) == []


def test_every_sqs_event_source_reports_batch_item_failures(template: Template) -> None:
    assert sqs_event_sources(template), "no SQS event sources found"
    assert sources_without_partial_failures(template) == []


def test_queue_visibility_is_six_times_its_consumers_timeout(template: Template) -> None:
    assert short_visibility_timeouts(template) == []


def test_sender_concurrency_is_capped_by_a_parameter(template: Template) -> None:
    assert senders_without_parameter_concurrency(template) == []


def test_every_destination_has_a_dead_letter_alarm(template: Template) -> None:
    assert destinations_without_dead_letter_alarm(template) == []


def test_bucket_is_private_encrypted_versioned_and_tls_only(template: Template) -> None:
    assert bucket_problems(template) == []


def test_table_has_point_in_time_recovery_ttl_and_encryption(template: Template) -> None:
    assert table_problems(template) == []


def test_runtimes_are_python312_or_newer(template: Template) -> None:
    assert old_runtimes(template) == []


def test_no_secret_value_comes_from_a_parameter(template: Template) -> None:
    assert resources_of(template, "AWS::SecretsManager::Secret")
    assert secrets_from_parameters(template) == []


def test_exactly_one_sender_per_destination(template: Template) -> None:
    assert sender_count_problems(template) == []


# ------------------------------------------------------------------------------------------------
# The contract the handlers and the local stack read
# ------------------------------------------------------------------------------------------------


def _logical(destination: str) -> str:
    return "".join(part.capitalize() for part in destination.split("-"))


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_sender_reads_its_own_queue_secret_and_limits(template: Template, destination: str) -> None:
    logical = _logical(destination)
    name = f"{logical}SenderFunction"
    properties = function_properties(template, name)
    variables = properties["Environment"]["Variables"]
    assert properties["CodeUri"] == "functions/sender/"
    assert properties["Handler"] == "app.handler"
    assert variables["DESTINATION"] == destination
    assert variables["QUEUE_URL"] == {"Ref": f"{logical}Queue"}
    assert variables["SECRET_NAME"] == {"Ref": f"{logical}Secret"}
    assert variables["RATE_PER_SECOND"] == {"Ref": f"RatePerSecond{logical}"}
    assert variables["MAX_CONCURRENCY"] == {"Ref": f"MaxConcurrency{logical}"}
    [(_, event, queue, _)] = [source for source in sqs_event_sources(template) if source[0] == name]
    assert (event, queue) == ("Chunks", f"{logical}Queue")


PROVIDER_BASE_URLS = {
    "mateo": "https://integration.getmateo.com/api/v1",
    "mateo-message": "https://integration.getmateo.com/api/v1",
    "symplify": "https://eu-proxy-1.symplifymail.com/rest",
    "workshop": "https://app.useworkshop.com/api/v1",
    "altcraft": "https://ru.altkraft.com/api/v1.1",
}


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_secret_placeholder_has_the_keys_the_sender_reads(template: Template, destination: str) -> None:
    properties = template["Resources"][f"{_logical(destination)}Secret"]["Properties"]
    assert sub_text(properties["Name"]) == f"${{AWS::StackName}}/providers/{destination}"
    value = json.loads(properties["SecretString"])
    assert value["base_url"] == PROVIDER_BASE_URLS[destination]
    assert value["token"] == "REPLACE_ME"
    assert ("customer_id" in value) == (destination == "symplify")
    for key in value:
        assert key in properties["Description"], f"the description does not mention {key}"


def test_splitter_knows_every_destination_queue(template: Template) -> None:
    variables = function_properties(template, "SplitterFunction")["Environment"]["Variables"]
    for destination in DESTINATIONS:
        suffix = destination.replace("-", "_").upper()
        assert variables[f"QUEUE_URL_{suffix}"] == {"Ref": f"{_logical(destination)}Queue"}
    for key in ("PRESIGN_EXPIRY_SECONDS", "TOLERATED_INVALID_PERCENT", "ROUTES_KEY"):
        assert key in variables


def test_splitter_failures_land_in_the_failure_queue(template: Template) -> None:
    config = template["Resources"]["SplitterFunction"]["Properties"]["EventInvokeConfig"]
    assert config["DestinationConfig"]["OnFailure"]["Type"] == "SQS"
    assert target_of(config["DestinationConfig"]["OnFailure"]["Destination"]) == "SplitterFailureQueue"
    [rule_target] = template["Resources"]["SplitterRule"]["Properties"]["Targets"]
    assert target_of(rule_target["DeadLetterConfig"]["Arn"]) == "SplitterFailureQueue"


def test_notification_path_follows_the_parameter(template: Template) -> None:
    resources = template["Resources"]
    assert resources["SplitterRule"]["Condition"] == "UseEventBridge"
    assert resources["SplitterRulePermission"]["Condition"] == "UseEventBridge"
    assert resources["SplitterS3Permission"]["Condition"] == "UseDirectS3"
    notification = resources["InboxBucket"]["Properties"]["NotificationConfiguration"]
    assert notification["EventBridgeConfiguration"] == {"EventBridgeEnabled": True}
    condition, direct, otherwise = notification["LambdaConfigurations"]["Fn::If"]
    assert (condition, otherwise) == ("UseDirectS3", {"Ref": "AWS::NoValue"})
    assert target_of(direct[0]["Function"]) == "SplitterFunction"


def test_functions_name_the_bucket_by_string_so_no_dependency_cycle(template: Template) -> None:
    bucket_name = template["Resources"]["InboxBucket"]["Properties"]["BucketName"]
    assert template["Globals"]["Function"]["Environment"]["Variables"]["BUCKET_NAME"] == bucket_name
    for name in resources_of(template, "AWS::Serverless::Function"):
        referenced = {target_of(value) for _, value in walk(template["Resources"][name])}
        assert "InboxBucket" not in referenced, f"{name} refers to InboxBucket and closes a cycle"


def test_dead_letter_function_drains_every_dead_letter_queue_and_the_splitters_failures(
    template: Template,
) -> None:
    drained = {
        queue for function, _, queue, _ in sqs_event_sources(template) if function == "DeadLetterFunction"
    }
    expected = {f"{_logical(destination)}DeadLetterQueue" for destination in DESTINATIONS}
    assert drained == expected | {"SplitterFailureQueue"}


# ------------------------------------------------------------------------------------------------
# The rules find what they look for (a planted fault is reported)
# ------------------------------------------------------------------------------------------------


def _plant_wildcard(template: Template) -> None:
    policies = template["Resources"]["MateoSenderFunction"]["Properties"]["Policies"]
    policies.append({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})


def _drop_redrive(template: Template) -> None:
    del template["Resources"]["WorkshopQueue"]["Properties"]["RedrivePolicy"]


def _drop_partial_failures(template: Template) -> None:
    events = template["Resources"]["AltcraftSenderFunction"]["Properties"]["Events"]
    events["Chunks"]["Properties"]["FunctionResponseTypes"] = []


def _shorten_visibility(template: Template) -> None:
    template["Resources"]["SymplifyQueue"]["Properties"]["VisibilityTimeout"] = 60


def _hardcode_concurrency(template: Template) -> None:
    events = template["Resources"]["MateoMessageSenderFunction"]["Properties"]["Events"]
    events["Chunks"]["Properties"]["ScalingConfig"]["MaximumConcurrency"] = 5


def _drop_dead_letter_alarm(template: Template) -> None:
    del template["Resources"]["AltcraftDeadLetterAlarm"]


def _unversion_bucket(template: Template) -> None:
    template["Resources"]["InboxBucket"]["Properties"]["VersioningConfiguration"]["Status"] = "Suspended"


def _drop_pitr(template: Template) -> None:
    del template["Resources"]["JobsTable"]["Properties"]["PointInTimeRecoverySpecification"]


def _old_runtime(template: Template) -> None:
    template["Resources"]["DeadLetterFunction"]["Properties"]["Runtime"] = "python3.11"


def _secret_from_parameter(template: Template) -> None:
    template["Parameters"]["MateoToken"] = {"Type": "String", "NoEcho": True}
    template["Resources"]["MateoSecret"]["Properties"]["SecretString"] = {
        "Fn::Sub": '{"token": "${MateoToken}"}'
    }


def _second_mateo_sender(template: Template) -> None:
    template["Resources"]["ExtraSenderFunction"] = copy.deepcopy(template["Resources"]["MateoSenderFunction"])


@pytest.mark.parametrize(
    ("rule", "plant"),
    [
        ("wildcard_allows", _plant_wildcard),
        ("queues_without_redrive", _drop_redrive),
        ("sources_without_partial_failures", _drop_partial_failures),
        ("short_visibility_timeouts", _shorten_visibility),
        ("senders_without_parameter_concurrency", _hardcode_concurrency),
        ("destinations_without_dead_letter_alarm", _drop_dead_letter_alarm),
        ("bucket_problems", _unversion_bucket),
        ("table_problems", _drop_pitr),
        ("old_runtimes", _old_runtime),
        ("secrets_from_parameters", _secret_from_parameter),
        ("sender_count_problems", _second_mateo_sender),
    ],
)
def test_rule_reports_a_planted_fault(
    template: Template, rule: str, plant: Callable[[Template], None]
) -> None:
    broken = copy.deepcopy(template)
    plant(broken)
    assert RULES[rule](broken), f"{rule} missed the planted fault"


# ------------------------------------------------------------------------------------------------
# cfn-lint
# ------------------------------------------------------------------------------------------------


def test_cfn_lint_reports_nothing() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    assert cfn_lint.exists(), f"cfn-lint is not installed next to {sys.executable} (pip install -e '.[dev]')"
    result = subprocess.run(
        [str(cfn_lint), str(TEMPLATE_PATH)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_dashboard_shows_every_destination_in_every_panel(template: Template) -> None:
    body = template["Resources"]["FlowDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]
    assert len(widgets) >= 4
    for widget in widgets:
        labels = {metric[-1]["label"].split(" ")[0] for metric in widget["properties"]["metrics"]}
        assert labels == set(DESTINATIONS), widget["properties"]["title"]


# ------------------------------------------------------------------------------------------------
# One definition per destination (Fn::ForEach over Mappings.Destinations)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_template() -> Template:
    """template.yaml as written, before its language extensions are expanded."""
    return cfn_yaml.load_template(TEMPLATE_PATH)


def _loops(section: dict[str, Any]) -> dict[str, list[Any]]:
    return {key: value for key, value in section.items() if key.startswith("Fn::ForEach::")}


def test_the_destinations_resources_are_written_once(raw_template: Template) -> None:
    logicals = [_logical(destination) for destination in DESTINATIONS]
    [(_, (identifier, collection, fragment))] = _loops(raw_template["Resources"]).items()
    assert collection == logicals
    assert sorted(fragment) == sorted(
        f"${{{identifier}}}{suffix}"
        for suffix in (
            "DeadLetterQueue",
            "Queue",
            "Secret",
            "SenderFunction",
            "DeadLetterAlarm",
            "OldestMessageAlarm",
            "SenderErrorsAlarm",
        )
    )
    written = [name for name in raw_template["Resources"] if name.startswith(tuple(logicals))]
    assert written == [], f"written out per destination instead of in the loop: {written}"


def test_every_destination_has_one_mapping_row_and_one_output_pair(raw_template: Template) -> None:
    rows = raw_template["Mappings"]["Destinations"]
    assert {row: rows[row]["Name"] for row in rows} == {_logical(d): d for d in DESTINATIONS}
    [(_, (_, collection, _))] = _loops(raw_template["Outputs"]).items()
    assert collection == list(rows)


def test_each_destination_gets_the_whole_definition(template: Template) -> None:
    for destination in DESTINATIONS:
        logical = _logical(destination)
        for suffix, resource_type in (
            ("DeadLetterQueue", "AWS::SQS::Queue"),
            ("Queue", "AWS::SQS::Queue"),
            ("Secret", "AWS::SecretsManager::Secret"),
            ("SenderFunction", "AWS::Serverless::Function"),
            ("DeadLetterAlarm", "AWS::CloudWatch::Alarm"),
            ("OldestMessageAlarm", "AWS::CloudWatch::Alarm"),
            ("SenderErrorsAlarm", "AWS::CloudWatch::Alarm"),
        ):
            assert template["Resources"][f"{logical}{suffix}"]["Type"] == resource_type
        assert template["Outputs"][f"{logical}QueueUrl"]["Value"] == {"Ref": f"{logical}Queue"}
        assert template["Outputs"][f"{logical}DeadLetterQueueUrl"]["Value"] == {
            "Ref": f"{logical}DeadLetterQueue"
        }


def test_sams_translator_turns_the_expanded_template_into_cloudformation(template: Template) -> None:
    packaged = copy.deepcopy(template)  # code locations as `sam package` leaves them: S3 URIs
    for name, resource in packaged["Resources"].items():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = f"s3://artifacts/{name}.zip"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name="eu-west-1"))
    translated = translator.translate(packaged, parameter_values={}, get_managed_policy_map=dict)
    functions = resources_of(translated, "AWS::Lambda::Function")
    senders_found = {
        function["Properties"]["Environment"]["Variables"].get("DESTINATION")
        for function in functions.values()
    }
    assert set(DESTINATIONS) <= senders_found
    mappings = resources_of(translated, "AWS::Lambda::EventSourceMapping").values()
    sources = {target_of(mapping["Properties"]["EventSourceArn"]) for mapping in mappings}
    assert {f"{_logical(d)}Queue" for d in DESTINATIONS} <= sources
    assert {f"{_logical(d)}DeadLetterQueue" for d in DESTINATIONS} <= sources


def _role_actions(transformed: Template) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for logical, resource in transformed["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        actions = found.setdefault(logical, set())
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                listed = statement["Action"]
                actions.update([listed] if isinstance(listed, str) else listed)
    return found


def test_no_function_may_delete_an_object_or_an_item() -> None:
    """No code path deletes a file, a staged chunk, a result or a job record (retention is the bucket's
    lifecycle rules and the table's TTL), so no role may: the roles SAM makes from template.yaml."""
    import boto3

    from fanout_local.deploy import ARTIFACT_KEYS, transform
    from fanout_local.deploy import load_template as deploy_load

    template = deploy_load()
    for resource in template["Resources"].values():
        key = ARTIFACT_KEYS.get(resource["Type"])
        if key:
            resource["Properties"][key] = "s3://artifacts/code.zip"  # what `sam package` leaves there
    transformed = transform(template, boto3.session.Session(region_name="eu-west-1"))
    actions = _role_actions(transformed)

    assert len(actions) == 7
    for role, granted in actions.items():
        deleting = {a for a in granted if "Delete" in a and a != "sqs:DeleteMessage"}
        assert not deleting, f"{role} may {sorted(deleting)}"
        assert not any(a.endswith("*") and not a.startswith("sqs:SendMessage") for a in granted), role


# ------------------------------------------------------------------------------------------------
# Sender sizes: template.yaml writes down what fanout.sizing derives from each destination's rate
# ------------------------------------------------------------------------------------------------


def find_in_map(template: Template, value: Any) -> Any:
    """`value`, or what its Fn::FindInMap names in the template's Mappings."""
    if isinstance(value, dict) and "Fn::FindInMap" in value:
        table, key, name = (
            k["Ref"] if isinstance(k, dict) and "Ref" in k else k for k in value["Fn::FindInMap"]
        )
        return template["Mappings"][table][key][name]
    return value


def template_sizes(template: Template, destination: str) -> dict[str, Any]:
    """What template.yaml says about `destination`'s sender: rate and concurrency defaults, batch size,
    function timeout and queue visibility timeout."""
    logical = _logical(destination)
    parameters = template["Parameters"]
    function = function_properties(template, f"{logical}SenderFunction")
    event = function["Events"]["Chunks"]["Properties"]
    queue = template["Resources"][f"{logical}Queue"]["Properties"]
    return {
        "rate_per_second": float(parameters[f"RatePerSecond{logical}"]["Default"]),
        "concurrency": int(parameters[f"MaxConcurrency{logical}"]["Default"]),
        "batch_size": int(find_in_map(template, event["BatchSize"])),
        "timeout_seconds": int(function["Timeout"]),
        "visibility_timeout_seconds": int(queue["VisibilityTimeout"]),
    }


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_sender_sizes_in_the_template_are_those_derived_from_the_rate(
    template: Template, destination: str
) -> None:
    from fanout.config import SenderConfig
    from fanout.destinations import Destination
    from fanout.providers import provider_for
    from fanout.sizing import sizing

    derived = sizing(Destination(destination))
    expected = {
        "rate_per_second": derived.rate_per_second,
        "concurrency": derived.concurrency,
        "batch_size": derived.batch_size,
        "timeout_seconds": derived.timeout_seconds,
        "visibility_timeout_seconds": derived.visibility_timeout_seconds,
    }
    assert template_sizes(template, destination) == expected
    # the batch's paced calls fit in the timeout with room for the rest of the work, and a live lease
    # always means a live invocation
    assert 2 * derived.paced_seconds < derived.timeout_seconds
    assert SenderConfig.model_fields["chunk_lease_seconds"].default > derived.timeout_seconds
    assert provider_for(Destination(destination)).rows_per_message == derived.rows_per_message


def test_a_mateo_message_invocation_fits_its_timeout_at_two_calls_a_second() -> None:
    # Issue 13 item 6: 5 messages x 25 rows at 2 calls/s = 62.5 s outran a 60 s timeout.
    from fanout.destinations import Destination
    from fanout.sizing import sizing

    derived = sizing(Destination.MATEO_MESSAGE)
    assert derived.batch_size * (derived.rows_per_message or 1) / derived.rate_per_second < 60
    assert derived.paced_seconds * 2 < derived.timeout_seconds
