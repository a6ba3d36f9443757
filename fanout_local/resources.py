"""AWS resources created from template.yaml itself, on any endpoint boto3 reaches (the local moto
server, or moto's in-process `mock_aws` in unit tests): queues with their redrive policies, the table,
the event bus, the secrets, the bucket with its notifications, and the splitter's rule.

Only the resources the flow touches are created; alarms, permissions and the layer have no local part.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from fanout.destinations import Destination
from fanout_local.template import Resolver, parameter_defaults, resources_of_type

ACCOUNT = "123456789012"
SPLITTER_EVENTS_QUEUE = "local-splitter-invocations"


class TemplateResources:
    """Creates the template's resources through `client(service)` and remembers their physical ids."""

    def __init__(
        self,
        client: Callable[[str], Any],
        template: Mapping[str, Any],
        *,
        stack_name: str,
        region: str,
        parameters: Mapping[str, str] | None = None,
        secret_values: Mapping[str, Any] | None = None,
        visibility_timeout: int | None = None,
    ) -> None:
        self.client = client
        self.template = template
        self.stack_name = stack_name
        self.region = region
        self.parameters = dict(parameters or {})
        self.secret_values = dict(secret_values or {})
        self.visibility_timeout = visibility_timeout
        self.bucket = ""
        self.splitter_events_url = ""
        self.splitter_events_arn = ""
        self.resolver = Resolver(template, {}, {})

    def outputs(self) -> dict[str, str]:
        """The template's Outputs for this stack, as `aws cloudformation describe-stacks` would list them."""
        found = {}
        for name, spec in self.template.get("Outputs", {}).items():
            try:
                found[name] = str(self.resolver.resolve(spec["Value"]))
            except KeyError:
                continue  # an output of a resource with no local part
        return found

    def environment(self, logical_id: str) -> dict[str, str]:
        """A function's environment variables, Globals merged, resolved to this stack's resources."""
        globals_fn = self.resolver.resolve(self.template.get("Globals", {}).get("Function", {}))
        props = self.resolver.resolve(self.template["Resources"][logical_id]["Properties"])
        env = {
            **globals_fn.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        return {k: str(v) for k, v in env.items()}

    def create(self) -> None:
        """Create every resource the flow uses, in dependency order."""
        params = {**parameter_defaults(self.template), **self.parameters}
        pseudo = {
            "AWS::StackName": self.stack_name,
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.resolver = resolver = Resolver(self.template, params, pseudo)
        # Resources the local stack does not create (layer, alarms, permissions) still answer Ref.
        for logical in self.template.get("Resources", {}):
            resolver.refs[logical] = f"{self.stack_name}-{logical}"
        for logical in resources_of_type(self.template, "AWS::Serverless::Function"):
            name = f"{self.stack_name}-{logical}"
            resolver.refs[logical] = name
            resolver.attrs[(logical, "Arn")] = f"arn:aws:lambda:{self.region}:{ACCOUNT}:function:{name}"
        self._create_queues(resolver)
        self._create_table(resolver)
        self._create_bus(resolver)
        self._create_secrets(resolver)
        self._create_bucket(resolver)

    def _create_queues(self, resolver: Resolver) -> None:
        sqs = self.client("sqs")
        queues = resources_of_type(self.template, "AWS::SQS::Queue")
        for logical in queues:
            name = f"{self.stack_name}-{logical}"
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            resolver.refs[logical] = url
            resolver.attrs[(logical, "Arn")] = arn
            resolver.attrs[(logical, "QueueName")] = name
            resolver.attrs[(logical, "QueueUrl")] = url
        for logical, res in queues.items():
            props = resolver.resolve(res.get("Properties", {}))
            attributes: dict[str, str] = {}
            for key in (
                "VisibilityTimeout",
                "MessageRetentionPeriod",
                "DelaySeconds",
                "ReceiveMessageWaitTimeSeconds",
            ):
                if key in props:
                    attributes[key] = str(props[key])
            if self.visibility_timeout is not None and "VisibilityTimeout" in attributes:
                attributes["VisibilityTimeout"] = str(self.visibility_timeout)
            if "RedrivePolicy" in props:
                attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
            if attributes:
                sqs.set_queue_attributes(QueueUrl=resolver.refs[logical], Attributes=attributes)
        # Lambda's internal queue for the splitter's asynchronous invocations (no template resource).
        url = sqs.create_queue(QueueName=SPLITTER_EVENTS_QUEUE)["QueueUrl"]
        self.splitter_events_url = url
        self.splitter_events_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def _create_table(self, resolver: Resolver) -> None:
        dynamodb = self.client("dynamodb")
        for logical, res in resources_of_type(self.template, "AWS::DynamoDB::Table").items():
            props = resolver.resolve(res["Properties"])
            name = props.get("TableName", f"{self.stack_name}-{logical}")
            args: dict[str, Any] = {
                "TableName": name,
                "KeySchema": props["KeySchema"],
                "AttributeDefinitions": props["AttributeDefinitions"],
                "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
            }
            if props.get("GlobalSecondaryIndexes"):
                args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
            dynamodb.create_table(**args)
            resolver.refs[logical] = name
            resolver.attrs[(logical, "Arn")] = f"arn:aws:dynamodb:{self.region}:{ACCOUNT}:table/{name}"

    def _create_bus(self, resolver: Resolver) -> None:
        events = self.client("events")
        for logical, res in resources_of_type(self.template, "AWS::Events::EventBus").items():
            name = resolver.resolve(res["Properties"])["Name"]
            arn = events.create_event_bus(Name=name)["EventBusArn"]
            resolver.refs[logical] = name
            resolver.attrs[(logical, "Arn")] = arn

    def _create_secrets(self, resolver: Resolver) -> None:
        secrets = self.client("secretsmanager")
        for logical, res in resources_of_type(self.template, "AWS::SecretsManager::Secret").items():
            props = resolver.resolve(res["Properties"])
            destination = next(d.value for d in Destination if f"{d.logical_name}Secret" == logical)
            value = self.secret_values.get(destination, props.get("SecretString", "{}"))
            value = value if isinstance(value, str) else json.dumps(value)
            arn = secrets.create_secret(Name=props["Name"], SecretString=value)["ARN"]
            resolver.refs[logical] = arn

    def _create_bucket(self, resolver: Resolver) -> None:
        s3 = self.client("s3")
        ((logical, res),) = resources_of_type(self.template, "AWS::S3::Bucket").items()
        props = res["Properties"]
        name = resolver.resolve(props["BucketName"])
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region})
        resolver.refs[logical] = name
        resolver.attrs[(logical, "Arn")] = f"arn:aws:s3:::{name}"
        if resolver.resolve(props.get("VersioningConfiguration", {})).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        self.bucket = name
        direct = resolver.parameters.get("UseDirectS3Notification") == "true"
        config: dict[str, Any]
        if direct:
            # The direct notification goes to the splitter; locally, to its asynchronous-invocation queue.
            config = {
                "QueueConfigurations": [
                    {
                        "QueueArn": self.splitter_events_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "inbox/"}]}},
                    }
                ]
            }
        else:
            config = {"EventBridgeConfiguration": {}}
        s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=config)
        if not direct:
            self._create_splitter_rule(resolver)

    def _create_splitter_rule(self, resolver: Resolver) -> None:
        events = self.client("events")
        for logical, res in resources_of_type(self.template, "AWS::Events::Rule").items():
            if res.get("Condition") and not resolver.condition(res["Condition"]):
                continue
            # The rule's target is the splitter; locally, its asynchronous-invocation queue.
            pattern = resolver.resolve(res["Properties"]["EventPattern"])
            events.put_rule(Name=logical, EventPattern=json.dumps(pattern), State="ENABLED")
            events.put_targets(
                Rule=logical, Targets=[{"Id": "SplitterTarget", "Arn": self.splitter_events_arn}]
            )
