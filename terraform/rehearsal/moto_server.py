#!/usr/bin/env python3
"""moto in server mode, with the rehearsal's extensions.

Started by rehearse.py (`python moto_server.py -H 127.0.0.1 -p PORT`). It is
moto_server, plus:

1. Three patches, each filling one measured gap of moto 5.2 with the behaviour
   AWS documents. Without them `terraform apply` of this configuration fails
   or hangs on moto for reasons that have nothing to do with the
   configuration. Each is listed in GAPS (printed at start and in the
   rehearsal's report) and is the only change to moto's behaviour; anything
   else moto does not support fails the rehearsal.

2. A request log: one JSON line per AWS request (access key, service,
   operation, the parameters that name a resource, and the status of the
   answer) written to $REHEARSAL_REQUEST_LOG. Every process of the rehearsal uses its own access
   key, so rehearse.py knows which role made each call and checks it against
   that role's policies.

The IAM managed policies (AdministratorAccess, attached to the Terraform
role) exist only with MOTO_IAM_LOAD_MANAGED_POLICIES=true, which rehearse.py
sets; that is configuration, not a patch.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

GAPS = [
    (
        "application-autoscaling ListTagsForResource / TagResource / UntagResource",
        "moto 5.2 does not implement them (500), so the provider cannot read back a scalable "
        "target it created. Stands for AWS keeping the tags given to RegisterScalableTarget "
        "and returning them.",
    ),
    (
        "SQS GetQueueAttributes omits RedriveAllowPolicy",
        "moto stores the attribute but never returns it, so the provider waits forever for "
        "aws_sqs_queue_redrive_allow_policy. Stands for AWS returning the attribute it was set to.",
    ),
    (
        "SQS GetQueueAttributes returns RedrivePolicy with spaces",
        "moto re-serialises the JSON with spaces, so every plan after an apply shows the queue "
        "(and, through it, every policy naming the queue) as changed. Stands for AWS returning "
        "the compact JSON it stores.",
    ),
    (
        "ECS DescribeServices omits enableECSManagedTags, healthCheckGracePeriodSeconds, "
        "availabilityZoneRebalancing",
        "moto ignores them in CreateService, so every plan after an apply shows both services as "
        "changed. Stands for AWS returning the settings a service was created with.",
    ),
    (
        "ECS UpdateService with a new task definition starts no deployment",
        "moto keeps the first deployment record, so a deploy cannot be followed to completion. "
        "Stands for ECS rolling the service out to the new revision; the rehearsal then runs "
        "the revision's containers itself (moto runs nothing).",
    ),
    (
        "EC2 security group rules that reference a group lose their description",
        "moto reads a rule's description only from its CIDR range, so every plan shows the rules "
        "between the load balancer and the API tasks as changed. Stands for AWS returning the "
        "description a rule was created with.",
    ),
    (
        "S3 applies a bucket policy's Deny statements without their conditions",
        "moto ignores Condition, so the bucket's TLS-only policy (deny when aws:SecureTransport is "
        "false) refuses every object request. The bucket policy is evaluated with its conditions "
        "instead (iam_policy.py), as AWS does, for a request over TLS 1.3: every client of AWS uses "
        "HTTPS, while the rehearsal's traffic is plain HTTP on loopback (that the policy refuses "
        "requests without TLS is checked separately).",
    ),
    (
        "SQS SetQueueAttributes without Policy clears the queue policy",
        "moto drops the Policy attribute whenever another attribute is set. Stands for AWS "
        "changing only the attributes a call names.",
    ),
]


# ---------------------------------------------------------------------------
# Gap patches
# ---------------------------------------------------------------------------


def patch_application_autoscaling_tags() -> None:
    from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse

    tags_by_arn: dict[str, dict[str, str]] = {}
    lock = threading.Lock()
    register = ApplicationAutoScalingResponse.register_scalable_target

    def register_scalable_target(self: Any) -> str:
        body = register(self)
        tags = self._get_param("Tags") or {}
        if tags:
            arn = json.loads(body)["ScalableTargetARN"]
            with lock:
                tags_by_arn.setdefault(arn, {}).update(tags)
        return body

    def list_tags_for_resource(self: Any) -> str:
        with lock:
            return json.dumps({"Tags": dict(tags_by_arn.get(self._get_param("ResourceARN"), {}))})

    def tag_resource(self: Any) -> str:
        with lock:
            tags_by_arn.setdefault(self._get_param("ResourceARN"), {}).update(self._get_param("Tags") or {})
        return "{}"

    def untag_resource(self: Any) -> str:
        with lock:
            tags = tags_by_arn.get(self._get_param("ResourceARN"), {})
            for key in self._get_param("TagKeys") or []:
                tags.pop(key, None)
        return "{}"

    ApplicationAutoScalingResponse.register_scalable_target = register_scalable_target
    ApplicationAutoScalingResponse.list_tags_for_resource = list_tags_for_resource
    ApplicationAutoScalingResponse.tag_resource = tag_resource
    ApplicationAutoScalingResponse.untag_resource = untag_resource


def patch_sqs_attributes() -> None:
    from moto.sqs.models import Queue

    set_attributes = Queue._set_attributes
    attributes = Queue.attributes.fget
    # A known attribute (GetQueueAttributes rejects unknown names), unset by default.
    Queue.BASE_ATTRIBUTES = [*Queue.BASE_ATTRIBUTES, "RedriveAllowPolicy"]
    Queue.redrive_allow_policy = None

    def _set_attributes(self: Any, attrs: dict[str, Any], now: float | None = None) -> None:
        keep_policy = "Policy" not in attrs and hasattr(self, "policy")
        policy = getattr(self, "policy", None)
        set_attributes(self, attrs, now)
        if keep_policy:
            self.policy = policy

    def queue_attributes(self: Any) -> dict[str, Any]:
        result = attributes(self)
        if self.redrive_policy:
            result["RedrivePolicy"] = json.dumps(self.redrive_policy, separators=(",", ":"))
        value = result.pop("RedriveAllowPolicy", None)
        if value:
            result["RedriveAllowPolicy"] = value if isinstance(value, str) else json.dumps(value)
        return result

    Queue._set_attributes = _set_attributes
    Queue.attributes = property(queue_attributes)


def patch_ecs_services() -> None:
    from moto.ecs import models
    from moto.ecs.responses import EC2ContainerServiceResponse

    create = EC2ContainerServiceResponse.create_service
    settings = {
        "enableECSManagedTags": ("enable_ecs_managed_tags", False),
        "healthCheckGracePeriodSeconds": ("health_check_grace_period_seconds", None),
        "availabilityZoneRebalancing": ("availability_zone_rebalancing", None),
    }

    def create_service(self: Any) -> Any:
        result = create(self)
        services, _ = self.ecs_backend.describe_services(
            self._get_param("cluster", "default"), [self._get_param("serviceName")]
        )
        for service in services:
            for param, (attr, default) in settings.items():
                value = self._get_param(param)
                setattr(service, attr, default if value is None else value)
        return result

    update = models.EC2ContainerServiceBackend.update_service

    def update_service(self: Any, props: dict[str, Any]) -> Any:
        revision = props.get("task_definition")
        service = update(self, props)
        if revision:
            arn = self.describe_task_definition(revision).arn
            service.task_definition = arn
            if service.deployments and service.deployments[0].get("taskDefinition") != arn:
                now = models.utcnow()
                deployment_id = f"ecs-svc/{models.mock_random.randint(0, 32**12)}"
                service.deployments = [{
                    **service.deployments[0],
                    "id": deployment_id,
                    "createdAt": now,
                    "updatedAt": now,
                    "taskDefinition": arn,
                    "status": "PRIMARY",
                    "desiredCount": service.desired_count,
                    "runningCount": service.desired_count,
                    "pendingCount": 0,
                    "failedTasks": 0,
                    "rolloutState": "COMPLETED",
                    "rolloutStateReason": f"ECS deployment {deployment_id} completed.",
                }]
        return service

    EC2ContainerServiceResponse.create_service = create_service
    models.EC2ContainerServiceBackend.update_service = update_service


def patch_security_group_rule_description() -> None:
    from moto.ec2.models.security_groups import SecurityGroupRule

    def description(self: Any) -> str | None:
        return self.ip_range.get("Description") or (self.source_group or {}).get("Description")

    SecurityGroupRule.description = property(description)


def patch_bucket_policy_conditions() -> None:
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    import iam_policy

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        policy = self.policy.decode() if isinstance(self.policy, bytes) else self.policy
        decision = iam_policy.evaluate([json.loads(policy)], action, resource,
                                       {"aws:SecureTransport": "true", "s3:TlsVersion": "1.3"}, resource_policy=True)
        if not decision.allowed:
            return PermissionResult.DENIED
        return PermissionResult.PERMITTED if decision.reason.startswith("allowed") else PermissionResult.NEUTRAL

    FakeBucket.get_permission = get_permission


# ---------------------------------------------------------------------------
# Request log
# ---------------------------------------------------------------------------


def _credential(auth: str) -> tuple[str, str, str]:
    """(access key, region, service) from a SigV4 Authorization header."""
    marker = "Credential="
    if marker not in auth:
        return "", "", ""
    scope = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
    if len(scope) < 5:
        return scope[0] if scope else "", "", ""
    return scope[0], scope[2], scope[3]


# Parameters of a request that name the resource it acts on (JSON and query
# protocols); kept in the log so that rehearse.py can build the ARN.
RESOURCE_PARAMS = (
    "QueueUrl", "Name", "Names", "cluster", "service", "services", "taskDefinition", "family",
    "repositoryName", "repositoryNames", "taskRoleArn", "executionRoleArn", "FunctionName", "RoleName", "ResourceARN",
)


def _params(content_type: str, body: bytes, query: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if query:
        params.update({k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()})
    if not body:
        return params
    if "json" in content_type:
        try:
            data = json.loads(body)
        except ValueError:
            return params
        if isinstance(data, dict):
            params.update(data)
    elif "x-www-form-urlencoded" in content_type:
        params.update({k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()})
    return params


class RequestLog:
    """WSGI middleware: one JSON line per AWS request."""

    def __init__(self, app: Callable, path: str) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives as long as the server

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/moto-api"):
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            key, region, service = _credential(environ.get("HTTP_AUTHORIZATION", ""))
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            params = _params(environ.get("CONTENT_TYPE", ""), body, environ.get("QUERY_STRING", ""))
            entry = {
                "key": key,
                "region": region,
                "service": service,
                "method": environ.get("REQUEST_METHOD", ""),
                "path": path,
                "query": environ.get("QUERY_STRING", ""),
                "operation": target.rsplit(".", 1)[-1] if target else params.get("Action", ""),
                "params": {k: params[k] for k in RESOURCE_PARAMS if k in params},
            }
            # Logged with the answer's status: a GET of a missing S3 key is
            # judged by it (404 only to a caller that may list; iam_policy.py).
            written = threading.Event()

            def write(status: str | None) -> None:
                if not written.is_set():
                    written.set()
                    entry["status"] = int(status.split(" ", 1)[0]) if status else None
                    with self.lock:
                        self.file.write(json.dumps(entry) + "\n")

            def start(status: str, headers: list, exc_info: Any = None) -> Any:
                write(status)
                return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

            try:
                return self.app(environ, start)
            except BaseException:
                write(None)  # failed before answering
                raise
        return self.app(environ, start_response)


def main(argv: list[str]) -> None:
    patch_application_autoscaling_tags()
    patch_sqs_attributes()
    patch_ecs_services()
    patch_security_group_rule_description()
    patch_bucket_policy_conditions()
    print("moto_server (rehearsal): filling moto gaps:", file=sys.stderr)
    for gap, why in GAPS:
        print(f"  - {gap}: {why}", file=sys.stderr)

    from moto import server

    log_path = os.environ.get("REHEARSAL_REQUEST_LOG")
    if log_path:
        dispatcher = server.DomainDispatcherApplication

        def with_log(create_app: Callable) -> Any:
            return RequestLog(dispatcher(create_app), log_path)

        server.DomainDispatcherApplication = with_log  # type: ignore[assignment]
    server.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
