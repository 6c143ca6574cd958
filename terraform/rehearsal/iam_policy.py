"""IAM policy evaluation for the rehearsal, and the AWS calls it checks.

moto stores policies but does not enforce them, so the rehearsal decides
itself, from the policy documents Terraform created, whether a role may make
a call: an explicit Deny in any policy wins, then any Allow, else the call is
implicitly denied (AWS's evaluation logic for identity-based policies within
one account). Conditions are evaluated for the operators and keys the
configuration uses; an operator this module does not know makes the
evaluation fail loudly rather than guess.

calls_from_log() turns the request log of moto_server.py into (actor, action,
resource, context) tuples: the IAM action each request needs, the ARN it
acts on, and the condition keys S3 evaluates with it (s3:prefix of a
listing). A GET or HEAD of an S3 key that is not there also yields the
s3:ListBucket that decides its answer: S3 answers 404 only to a caller that
may list the bucket, and 403 otherwise; for that decision it takes the
requested key as s3:prefix (which Ceph's RGW reproduces to match AWS,
ceph/ceph#68577), so a ListBucket grant limited with StringLike on s3:prefix
covers exactly the keys below that prefix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import parse_qs, unquote


class PolicyError(Exception):
    """A policy this evaluator cannot judge."""


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, *, case_sensitive: bool) -> bool:
    # IAM wildcards: * and ? only ([ ] are literal).
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


def _condition_matches(operator: str, key: str, wanted: list[Any], context: dict[str, Any]) -> bool:
    if operator.startswith(("ForAnyValue:", "ForAllValues:")):
        raise PolicyError(f"condition operator {operator} is not supported by the rehearsal's evaluator")
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    if key not in context:
        # A missing key never satisfies a condition, except with ...IfExists.
        return if_exists or base == "Null" and any(str(w).lower() == "true" for w in wanted)
    actual = [str(v) for v in _as_list(context[key])]
    wanted_s = [str(w) for w in wanted]
    if base == "Null":
        return any(w.lower() == "false" for w in wanted_s)
    if base in ("StringEquals", "ArnEquals"):
        return any(a == w for a in actual for w in wanted_s)
    if base == "StringEqualsIgnoreCase":
        return any(a.lower() == w.lower() for a in actual for w in wanted_s)
    if base in ("StringNotEquals", "ArnNotEquals"):
        return all(a != w for a in actual for w in wanted_s)
    if base in ("StringLike", "ArnLike"):
        return any(_wildcard(w, a, case_sensitive=True) for a in actual for w in wanted_s)
    if base in ("StringNotLike", "ArnNotLike"):
        return not any(_wildcard(w, a, case_sensitive=True) for a in actual for w in wanted_s)
    if base == "Bool":
        return any(a.lower() == w.lower() for a in actual for w in wanted_s)
    numeric = {
        "NumericEquals": lambda a, w: a == w,
        "NumericNotEquals": lambda a, w: a != w,
        "NumericLessThan": lambda a, w: a < w,
        "NumericLessThanEquals": lambda a, w: a <= w,
        "NumericGreaterThan": lambda a, w: a > w,
        "NumericGreaterThanEquals": lambda a, w: a >= w,
    }
    if base in numeric:
        return any(numeric[base](float(a), float(w)) for a in actual for w in wanted_s)
    raise PolicyError(f"condition operator {operator} is not supported by the rehearsal's evaluator")


def _statement_applies(st: dict[str, Any], action: str, resource: str, context: dict[str, Any],
                       principal: str | None) -> bool:
    if "Action" in st:
        if not any(_wildcard(p, action, case_sensitive=False) for p in _as_list(st["Action"])):
            return False
    elif "NotAction" in st:
        if any(_wildcard(p, action, case_sensitive=False) for p in _as_list(st["NotAction"])):
            return False
    else:
        raise PolicyError(f"statement without Action or NotAction: {st}")
    if "Resource" in st:
        if not any(_wildcard(p, resource, case_sensitive=True) for p in _as_list(st["Resource"])):
            return False
    elif "NotResource" in st:
        if any(_wildcard(p, resource, case_sensitive=True) for p in _as_list(st["NotResource"])):
            return False
    elif principal is None:
        raise PolicyError(f"identity policy statement without Resource: {st}")
    if principal is not None:
        # Resource-based policy: only Principal "*" (or {"AWS": "*"}) is understood.
        p = st.get("Principal")
        if not (p == "*" or (isinstance(p, dict) and "*" in _as_list(p.get("AWS")))):
            return False
    for operator, keys in (st.get("Condition") or {}).items():
        for key, wanted in keys.items():
            if not _condition_matches(operator, key, _as_list(wanted), context):
                return False
    return True


@dataclass
class Decision:
    allowed: bool
    reason: str


def evaluate(documents: Iterable[dict[str, Any]], action: str, resource: str,
             context: dict[str, Any] | None = None, *, resource_policy: bool = False) -> Decision:
    """Whether the policy documents allow `action` on `resource`.

    For identity-based documents (resource_policy False). With resource_policy
    True the documents are resource-based ones, of which only statements with
    Principal "*" are considered: the result then says whether they deny."""
    context = context or {}
    allowed_by = None
    for doc in documents:
        for i, st in enumerate(_as_list(doc.get("Statement"))):
            if not _statement_applies(st, action, resource, context, "*" if resource_policy else None):
                continue
            sid = st.get("Sid") or f"statement {i}"
            if st.get("Effect") == "Deny":
                return Decision(False, f"explicitly denied by {sid}")
            if st.get("Effect") == "Allow" and allowed_by is None:
                allowed_by = sid
    if allowed_by:
        return Decision(True, f"allowed by {allowed_by}")
    return Decision(resource_policy, "no statement applies" if resource_policy else "no statement allows it")


# ---------------------------------------------------------------------------
# Calls recorded by moto_server.py's request log
# ---------------------------------------------------------------------------

# Signing name -> IAM service prefix, where they differ.
IAM_PREFIX = {"monitoring": "cloudwatch"}

# Operations whose IAM action has another name.
ACTION_OF = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjectVersions": "s3:ListBucketVersions",
    "s3:DeleteObjects": "s3:DeleteObject",
    "lambda:GetFunctionConfiguration": "lambda:GetFunctionConfiguration",
}

# Calls that need no permission at all.
FREE = {"sts:GetCallerIdentity"}

# S3 bucket subresources: query parameter -> (read action, write action, delete action).
S3_SUBRESOURCES = {
    "acl": ("s3:GetBucketAcl", "s3:PutBucketAcl", None),
    "policy": ("s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"),
    "versioning": ("s3:GetBucketVersioning", "s3:PutBucketVersioning", None),
    "lifecycle": ("s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration", "s3:PutLifecycleConfiguration"),
    "encryption": ("s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration", "s3:PutEncryptionConfiguration"),
    "publicAccessBlock": ("s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock",
                          "s3:PutBucketPublicAccessBlock"),
    "ownershipControls": ("s3:GetBucketOwnershipControls", "s3:PutBucketOwnershipControls",
                          "s3:PutBucketOwnershipControls"),
    "tagging": ("s3:GetBucketTagging", "s3:PutBucketTagging", "s3:PutBucketTagging"),
    "cors": ("s3:GetBucketCORS", "s3:PutBucketCORS", "s3:PutBucketCORS"),
    "website": ("s3:GetBucketWebsite", "s3:PutBucketWebsite", "s3:DeleteBucketWebsite"),
    "logging": ("s3:GetBucketLogging", "s3:PutBucketLogging", None),
    "replication": ("s3:GetReplicationConfiguration", "s3:PutReplicationConfiguration",
                    "s3:PutReplicationConfiguration"),
    "accelerate": ("s3:GetAccelerateConfiguration", "s3:PutAccelerateConfiguration", None),
    "requestPayment": ("s3:GetBucketRequestPayment", "s3:PutBucketRequestPayment", None),
    "object-lock": ("s3:GetBucketObjectLockConfiguration", "s3:PutBucketObjectLockConfiguration", None),
    "location": ("s3:GetBucketLocation", None, None),
    "notification": ("s3:GetBucketNotification", "s3:PutBucketNotification", None),
    "versions": ("s3:ListBucketVersions", None, None),
    "uploads": ("s3:ListBucketMultipartUploads", None, None),
    "delete": (None, "s3:DeleteObject", None),
}

LAMBDA_ROUTES = [  # (method, path regex, operation)
    ("GET", r"/2015-03-31/functions/?", "ListFunctions"),
    ("POST", r"/2015-03-31/functions/?", "CreateFunction"),
    ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)/?", "GetFunction"),
    ("DELETE", r"/2015-03-31/functions/(?P<fn>[^/]+)/?", "DeleteFunction"),
    ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)/configuration/?", "GetFunctionConfiguration"),
    ("PUT", r"/2015-03-31/functions/(?P<fn>[^/]+)/configuration/?", "UpdateFunctionConfiguration"),
    ("PUT", r"/2015-03-31/functions/(?P<fn>[^/]+)/code/?", "UpdateFunctionCode"),
    ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)/versions/?", "ListVersionsByFunction"),
    ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)/policy/?", "GetPolicy"),
    ("POST", r"/2015-03-31/functions/(?P<fn>[^/]+)/policy/?", "AddPermission"),
    ("DELETE", r"/2015-03-31/functions/(?P<fn>[^/]+)/policy/[^/]+/?", "RemovePermission"),
    ("POST", r"/2015-03-31/functions/(?P<fn>[^/]+)/invocations/?", "InvokeFunction"),
    ("GET", r"/20\d\d-\d\d-\d\d/functions/(?P<fn>[^/]+)/code-signing-config/?", "GetFunctionCodeSigningConfig"),
    ("GET", r"/20\d\d-\d\d-\d\d/functions/(?P<fn>[^/]+)/concurrency/?", "GetFunctionConcurrency"),
    ("GET", r"/20\d\d-\d\d-\d\d/functions/(?P<fn>[^/]+)/event-invoke-config/?", "GetFunctionEventInvokeConfig"),
    ("GET", r"/20\d\d-\d\d-\d\d/functions/(?P<fn>[^/]+)/recursion-config/?", "GetFunctionRecursionConfig"),
    ("GET", r"/2015-03-31/event-source-mappings/?", "ListEventSourceMappings"),
    ("POST", r"/2015-03-31/event-source-mappings/?", "CreateEventSourceMapping"),
    ("GET", r"/2015-03-31/event-source-mappings/[^/]+/?", "GetEventSourceMapping"),
    ("PUT", r"/2015-03-31/event-source-mappings/[^/]+/?", "UpdateEventSourceMapping"),
    ("DELETE", r"/2015-03-31/event-source-mappings/[^/]+/?", "DeleteEventSourceMapping"),
    ("GET", r"/2017-03-31/tags/.+", "ListTags"),
    ("POST", r"/2017-03-31/tags/.+", "TagResource"),
    ("DELETE", r"/2017-03-31/tags/.+", "UntagResource"),
]


@dataclass
class Call:
    key: str
    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)
    operation: str = ""
    # Only decides how S3 answers a request for a missing key (404 if
    # allowed, 403 if not); the request itself needs no such permission.
    answers_missing_key: bool = False

    def __str__(self) -> str:
        extra = f" ({', '.join(f'{k}={v}' for k, v in self.context.items())})" if self.context else ""
        return f"{self.action} on {self.resource}{extra}"


def _s3_object(path: str) -> tuple[str, str]:
    parts = unquote(path).lstrip("/").split("/", 1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _s3_context(action: str, query: str) -> dict[str, str]:
    """The condition keys S3 evaluates with a request: for a listing, its
    prefix (absent when the request names none)."""
    params = parse_qs(query, keep_blank_values=True)
    if action == "s3:ListBucket" and "prefix" in params:
        return {"s3:prefix": params["prefix"][0]}
    return {}


def _s3_call(method: str, path: str, query: str) -> tuple[str, str]:
    bucket, key = _s3_object(path)
    params = parse_qs(query, keep_blank_values=True)
    if not bucket:
        return "s3:ListAllMyBuckets", "*"
    if key:
        arn = f"arn:aws:s3:::{bucket}/{key}"
        if "tagging" in params:
            return ("s3:GetObjectTagging" if method == "GET" else "s3:PutObjectTagging"), arn
        op = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject", "DELETE": "s3:DeleteObject",
              "POST": "s3:PutObject"}.get(method, f"s3:?{method}")
        if method in ("GET", "HEAD", "DELETE") and "versionId" in params:
            op += "Version"
        return op, arn
    arn = f"arn:aws:s3:::{bucket}"
    for sub, (read, write, delete) in S3_SUBRESOURCES.items():
        if sub in params:
            action = {"GET": read, "HEAD": read, "PUT": write, "POST": write, "DELETE": delete}.get(method)
            if action is None:
                break
            return action, (arn + "/*" if sub == "delete" else arn)
    bucket_ops = {"GET": "s3:ListBucket", "HEAD": "s3:ListBucket", "PUT": "s3:CreateBucket",
                  "DELETE": "s3:DeleteBucket"}
    if set(params) <= {"list-type", "prefix", "delimiter", "max-keys", "continuation-token", "start-after",
                       "encoding-type", "fetch-owner", "marker"} and method in bucket_ops:
        return bucket_ops[method], arn
    return f"s3:?{method} {path}?{query}", arn


def _lambda_operation(method: str, path: str) -> tuple[str, str | None]:
    for m, pattern, op in LAMBDA_ROUTES:
        match = re.fullmatch(pattern, path)
        if m == method and match:
            return op, match.groupdict().get("fn")
    return f"?{method} {path}", None


def call_of(entry: dict[str, Any], account: str) -> Call:
    """The IAM action one logged request needs, and the ARN it acts on."""
    service, region, params = entry["service"], entry["region"], entry.get("params", {})
    prefix = IAM_PREFIX.get(service, service)
    if service == "s3":
        action, resource = _s3_call(entry["method"], entry["path"], entry.get("query", ""))
        return Call(entry["key"], action, resource, _s3_context(action, entry.get("query", "")), operation=action)
    if service == "lambda":
        operation, fn = _lambda_operation(entry["method"], entry["path"])
        resource = "*"
        if fn:
            name = unquote(fn)
            resource = name if name.startswith("arn:") else f"arn:aws:lambda:{region}:{account}:function:{name}"
        return Call(entry["key"], f"lambda:{operation}", resource, operation=operation)
    operation = entry.get("operation") or f"?{entry['method']} {entry['path']}"
    action = ACTION_OF.get(f"{prefix}:{operation}", f"{prefix}:{operation}")
    resource = "*"
    context: dict[str, str] = {}
    if prefix == "sqs" and "QueueUrl" in params:
        resource = f"arn:aws:sqs:{region}:{account}:{params['QueueUrl'].rstrip('/').rsplit('/', 1)[-1]}"
    elif prefix == "ssm" and operation in ("GetParameter", "PutParameter", "DeleteParameter") and "Name" in params:
        resource = f"arn:aws:ssm:{region}:{account}:parameter/{params['Name'].lstrip('/')}"
    elif prefix == "ecs" and operation in ("UpdateService", "DescribeServices") and (
            "service" in params or "services" in params):
        cluster = params.get("cluster", "default").rsplit("/", 1)[-1]
        service_name = params.get("service") or _as_list(params.get("services"))[0]
        resource = service_name if service_name.startswith("arn:") else \
            f"arn:aws:ecs:{region}:{account}:service/{cluster}/{service_name}"
    elif prefix == "ecr" and ("repositoryName" in params or len(_as_list(params.get("repositoryNames"))) == 1):
        name = params.get("repositoryName") or _as_list(params.get("repositoryNames"))[0]
        resource = f"arn:aws:ecr:{region}:{account}:repository/{name}"
    return Call(entry["key"], action, resource, context, operation=operation)


def implied_calls(entry: dict[str, Any], call: Call) -> list[Call]:
    """Permissions a call needs beyond its own action (iam:PassRole), and the
    one that decides how S3 answers a read of a missing key."""
    params = entry.get("params", {})
    if call.action == "ecs:RegisterTaskDefinition":
        return [Call(call.key, "iam:PassRole", params[k], {"iam:PassedToService": "ecs-tasks.amazonaws.com"},
                     operation="PassRole")
                for k in ("taskRoleArn", "executionRoleArn") if params.get(k)]
    if call.action == "s3:GetObject" and entry.get("status") == 404:
        bucket, key = _s3_object(entry["path"])
        return [Call(call.key, "s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": key},
                     operation="GetObject of a missing key", answers_missing_key=True)]
    return []


def calls_from_log(lines: Iterable[str], account: str) -> list[tuple[dict[str, Any], Call]]:
    out = []
    for line in lines:
        if not line.strip():
            continue
        entry = json.loads(line)
        call = call_of(entry, account)
        out.append((entry, call))
        out.extend((entry, implied) for implied in implied_calls(entry, call))
    return out

