#!/usr/bin/env python3
"""Check that terraform/ agrees with what the binaries read and call.

The binary describes itself: `queue2bucket manifest` prints, per component
(api, worker, lambda-api, lambda-worker), the environment variables it reads
(required and optional) and the AWS API actions it calls, plus the API's health
check path and default port. This script parses the Terraform configuration
with python-hcl2 and fails when:

- an ECS container (api, worker) or Lambda function (api, worker) sets an
  environment variable its binary does not read, or leaves out a required one
  (or, on Lambda, sets a variable the runtime reserves, such as AWS_REGION);
- the actions granted to a role differ from the calls its binary makes
  (set equality; see ALLOWED_EXTRA_ACTIONS for the only documented extras),
  a role's policy uses Resource "*", or a role gets permissions in a way this
  script cannot inspect (managed policy attachments, inline JSON, ...);
- the worker's s3:PutObject grant is not limited to its S3_KEY_PREFIX;
- the claim check (emails too large for a queue message, staged in the
  bucket below S3_STAGING_PREFIX) is not wired as the code needs it: the
  API's s3:PutObject reaches beyond the staging prefix, or the API has no
  S3_BUCKET_NAME to stage in; the worker lacks s3:GetObject / s3:DeleteObject
  on the staging prefix (or has them anywhere else), or s3:ListBucket other
  than on the bucket with a StringLike condition on s3:prefix below the
  staging prefix and the key prefix; the containers and functions stage in different buckets or
  under different prefixes (their S3_STAGING_PREFIX, or the binary's
  default); the staging prefix overlaps S3_KEY_PREFIX; the bucket has no
  enabled lifecycle rule expiring the staging prefix later than a pointer
  message can live (the queue's retention plus the dead-letter queue's), or
  a rule expiring current objects reaches stored emails; the queue and the
  dead-letter queue do not set the same max_message_size;
- a container or function sets a setting with a fixed set of values (the
  manifest's env.values: S3_KEY_LAYOUT, LOG_FORMAT, ...) to one its binary
  does not accept; the components that store emails (those reading
  S3_KEY_LAYOUT) lay keys out differently (their S3_KEY_LAYOUT, or the
  binary's default), for any value var.s3_key_layout accepts, or that
  variable accepts a layout the binaries do not (the worker's s3:PutObject on
  <bucket>/<S3_KEY_PREFIX>* covers both layouts, checked above);
- the ECS task definitions (runtime_platform: LINUX, ARM64 or X86_64) and the
  Lambda functions (architectures) do not all run on the architecture
  var.architecture names, for each value it accepts, or Terraform would
  change a function's architecture without its code (architectures missing
  from the function's ignore_changes: the deploy sets it with the code);
- a load balancer target group health-checks another path than the API's
  health_check_path, or the container/target port differs from default_port;
- the dashboard or an alarm reads, in the binaries' metrics namespace, a
  metric the code does not emit under that Service value (the manifest's
  "metrics": namespace, dimension, emitted names per Service value), uses
  another dimension, or reads a namespace other than the one every container
  and function publishes to (its METRICS_NAMESPACE, or the binary's default);
- an alarm does not notify var.alarm_actions both when it fires and when it
  clears, leaves treat_missing_data unset, or has no runbook description.

Usage:
    test_consistency.py --manifest FILE            # FILE may be '-' for stdin
    test_consistency.py --self-test [--manifest FILE]

--self-test first checks the real configuration, then applies a series of
deliberate mismatches to copies of the parsed configuration and manifest and
asserts that each one is reported, proving the checks can fail. Without
--manifest it uses REFERENCE_MANIFEST, a hand-written fixture of the format.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

try:
    import hcl2
except ImportError:  # pragma: no cover - environment problem
    sys.exit("test_consistency: python-hcl2 is not installed; run scripts/setup.sh (it installs into ./.venv)")

TERRAFORM_DIR = Path(__file__).resolve().parent.parent

# Terraform resource names of the task definitions, functions and roles that
# belong to each component of the manifest.
ECS_TASK_DEFINITIONS = {"api": "api", "worker": "worker"}  # component -> aws_ecs_task_definition name
ECS_CONTAINER_NAMES = {"api": "api", "worker": "worker"}  # component -> container name
LAMBDA_FUNCTIONS = {"lambda-api": "api", "lambda-worker": "worker"}  # component -> aws_lambda_function name
ROLES = {  # component -> aws_iam_role name
    "api": "api_task",
    "worker": "worker_task",
    "lambda-api": "lambda_api",
    "lambda-worker": "lambda_worker",
}
API_TARGET_GROUP = "api"  # aws_lb_target_group of the Fargate API service
API_SERVICE = "api"  # aws_ecs_service of the API

# Actions a role may (and must) have beyond the binary's own calls:
# - the Lambda functions write their logs with their own role, into log groups
#   Terraform creates (so no logs:CreateLogGroup);
# - Lambda's SQS event source mapping polls the queue with the worker
#   function's role; the function itself never calls SQS.
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
ESM_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
ALLOWED_EXTRA_ACTIONS = {
    "api": set(),
    "worker": set(),
    "lambda-api": LOG_ACTIONS,
    "lambda-worker": LOG_ACTIONS | ESM_ACTIONS,
}

# Variables the Lambda runtime sets itself; setting them is rejected or ignored.
LAMBDA_RESERVED_ENV = {
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
}

# The documented manifest format, written by hand: what --self-test uses when
# no --manifest is given (scripts/manifest.sh merges what each binary prints).
_VALUES = {"LOG_FORMAT": ["json", "text"], "METRICS_FORMAT": ["emf", "off"]}
_API_ENV = {
    "required": ["SQS_QUEUE_URL", "TOKEN_PARAM_NAME"],
    "optional": ["AWS_REGION", "HEADER_TIMEOUT", "KEEP_ALIVE_TIMEOUT", "LOG_FORMAT", "MAX_BYTES_IN_FLIGHT",
                 "MAX_CONCURRENT_REQUESTS", "MAX_EMAIL_BYTES", "METRICS_FORMAT", "METRICS_NAMESPACE", "PORT",
                 "REQUEST_TIMEOUT", "RUST_LOG", "S3_BUCKET_NAME", "S3_STAGING_PREFIX", "SQS_SEND_CONCURRENCY",
                 "TOKEN_CACHE_TTL", "TOKEN_REFRESH_INTERVAL"],
    "defaults": {"HEADER_TIMEOUT": "5", "KEEP_ALIVE_TIMEOUT": "75", "LOG_FORMAT": "json",
                 "MAX_BYTES_IN_FLIGHT": "67108864", "MAX_CONCURRENT_REQUESTS": "256", "MAX_EMAIL_BYTES": "5242880",
                 "METRICS_FORMAT": "emf", "METRICS_NAMESPACE": "Queue2Bucket", "PORT": "8000",
                 "REQUEST_TIMEOUT": "10", "S3_STAGING_PREFIX": "staging/", "SQS_SEND_CONCURRENCY": "4",
                 "TOKEN_CACHE_TTL": "300", "TOKEN_REFRESH_INTERVAL": "1"},
    "values": _VALUES,
}
REFERENCE_MANIFEST: dict[str, Any] = {
    "health_check_path": "/",
    "default_port": 8000,
    "components": {
        "api": {
            "env": _API_ENV,
            "aws_actions": ["s3:PutObject", "sqs:GetQueueAttributes", "sqs:SendMessage", "ssm:GetParameter"],
            "aws_call_timeout_secs": 5,
        },
        "worker": {
            "env": {
                "required": ["S3_BUCKET_NAME", "SQS_QUEUE_URL"],
                "optional": ["AWS_REGION", "LOG_FORMAT", "MAX_BYTES_IN_FLIGHT", "METRICS_FORMAT", "METRICS_NAMESPACE",
                             "POLL_INTERVAL", "RUST_LOG", "S3_KEY_LAYOUT", "S3_KEY_PREFIX", "S3_STAGING_PREFIX",
                             "WORKER_CONCURRENCY"],
                "defaults": {"LOG_FORMAT": "json", "MAX_BYTES_IN_FLIGHT": "67108864", "METRICS_FORMAT": "emf",
                             "METRICS_NAMESPACE": "Queue2Bucket", "POLL_INTERVAL": "10", "S3_KEY_LAYOUT": "time",
                             "S3_KEY_PREFIX": "emails/", "S3_STAGING_PREFIX": "staging/", "WORKER_CONCURRENCY": "4"},
                "values": {**_VALUES, "S3_KEY_LAYOUT": ["time", "hashed"]},
            },
            "aws_actions": ["s3:DeleteObject", "s3:GetObject", "s3:ListBucket", "s3:PutObject",
                            "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                            "sqs:ReceiveMessage"],
            "aws_call_timeout_secs": 30,
        },
        "lambda-api": {
            "env": {
                "required": _API_ENV["required"],
                "optional": [v for v in _API_ENV["optional"] if v not in ("HEADER_TIMEOUT", "KEEP_ALIVE_TIMEOUT", "PORT")],
                "defaults": {k: v for k, v in _API_ENV["defaults"].items()
                             if k not in ("HEADER_TIMEOUT", "KEEP_ALIVE_TIMEOUT", "PORT")},
                "values": _VALUES,
            },
            "aws_actions": ["s3:PutObject", "sqs:GetQueueAttributes", "sqs:SendMessage", "ssm:GetParameter"],
            "aws_call_timeout_secs": 5,
        },
        "lambda-worker": {
            "env": {
                "required": ["S3_BUCKET_NAME"],
                "optional": ["AWS_REGION", "LOG_FORMAT", "MAX_BYTES_IN_FLIGHT", "METRICS_FORMAT", "METRICS_NAMESPACE",
                             "RUST_LOG", "S3_KEY_LAYOUT", "S3_KEY_PREFIX", "S3_STAGING_PREFIX"],
                "defaults": {"LOG_FORMAT": "json", "MAX_BYTES_IN_FLIGHT": "67108864", "METRICS_FORMAT": "emf",
                             "METRICS_NAMESPACE": "Queue2Bucket", "S3_KEY_LAYOUT": "time", "S3_KEY_PREFIX": "emails/",
                             "S3_STAGING_PREFIX": "staging/"},
                "values": {**_VALUES, "S3_KEY_LAYOUT": ["time", "hashed"]},
            },
            "aws_actions": ["s3:DeleteObject", "s3:GetObject", "s3:ListBucket", "s3:PutObject"],
            "aws_call_timeout_secs": 30,
        },
    },
    "metrics": {
        "namespace": {"env": "METRICS_NAMESPACE", "default": "Queue2Bucket"},
        "dimension": "Service",
        "emitted": {
            "api": ["EmailsAccepted", "RejectedInvalid", "RejectedUnauthorized", "RejectedTimeout",
                    "RejectedTooLarge", "RejectedMediaType", "UnavailableQueue", "UnavailableTokenStore",
                    "UnavailableOverloaded", "UnavailableDeadline", "UnavailableBucket", "SqsSendCalls",
                    "SqsBatchSize", "ApiLatency", "TokenReads", "TokenReadFailures"],
            "worker": ["MessagesReceived", "EmailsStored", "EmailsAlreadyStored", "StoreFailures",
                       "MessagesUnstorable", "MessagesHandedBack", "EndToEndLatency", "WorkerBatchTime"],
        },
    },
}


class ConfigError(Exception):
    """The configuration has a shape this script cannot check."""


# ---------------------------------------------------------------------------
# Parsed configuration
# ---------------------------------------------------------------------------


class Config:
    """The root module's blocks, as python-hcl2 parses them.

    python-hcl2 wraps every attribute value and every block in a list; object
    values inside an attribute are plain dicts. Interpolated expressions are
    strings of the form "${...}".
    """

    def __init__(self) -> None:
        self.resources: dict[str, dict[str, dict]] = {}
        self.data: dict[str, dict[str, dict]] = {}
        self.locals: dict[str, Any] = {}
        self.variables: dict[str, dict] = {}

    @classmethod
    def load(cls, tf_dir: Path) -> "Config":
        cfg = cls()
        files = sorted(tf_dir.glob("*.tf"))
        if not files:
            raise ConfigError(f"no .tf files in {tf_dir}")
        for path in files:
            with path.open(encoding="utf-8") as fh:
                try:
                    parsed = hcl2.load(fh)
                except Exception as exc:  # python-hcl2 raises lark errors
                    raise ConfigError(f"cannot parse {path}: {exc}") from exc
            for block in parsed.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        cfg.resources.setdefault(rtype, {})[name] = body
            for block in parsed.get("data", []):
                for dtype, named in block.items():
                    for name, body in named.items():
                        cfg.data.setdefault(dtype, {})[name] = body
            for block in parsed.get("locals", []):
                for key, value in block.items():
                    if not key.startswith("__"):
                        cfg.locals[key] = unwrap(value)
            for block in parsed.get("variable", []):
                for name, body in block.items():
                    cfg.variables[name] = body
        return cfg

    def resource(self, rtype: str, name: str) -> dict:
        try:
            return self.resources[rtype][name]
        except KeyError:
            raise ConfigError(f"resource {rtype}.{name} not found") from None

    def data_source(self, dtype: str, name: str) -> dict:
        try:
            return self.data[dtype][name]
        except KeyError:
            raise ConfigError(f"data source {dtype}.{name} not found") from None


def unwrap(value: Any) -> Any:
    """python-hcl2 wraps attribute values in a one-element list."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def attr(body: dict, key: str, default: Any = None) -> Any:
    if key not in body:
        return default
    return unwrap(body[key])


def blocks(body: dict, key: str) -> list[dict]:
    value = body.get(key, [])
    return value if isinstance(value, list) else [value]


EXPR = re.compile(r"^\$\{([^${}]+)\}$")


def expr_of(value: Any) -> str | None:
    """The expression inside "${...}", or None for literals and templates."""
    if isinstance(value, str):
        m = EXPR.match(value)
        if m:
            return m.group(1).strip()
    return None


class Unresolved(str):
    """An expression this script cannot evaluate (kept as its text)."""


def resolve(cfg: Config, value: Any, depth: int = 0) -> Any:
    """Evaluate literals and simple references: var.X (its default), local.X,
    tostring(...). Anything else comes back as Unresolved."""
    if depth > 20:
        return Unresolved(str(value))
    expr = expr_of(value)
    if expr is None:
        return value
    m = re.fullmatch(r"var\.(\w+)", expr)
    if m:
        var = cfg.variables.get(m.group(1))
        if var is None or "default" not in var:
            return Unresolved(value)
        return resolve(cfg, attr(var, "default"), depth + 1)
    m = re.fullmatch(r"local\.(\w+)", expr)
    if m:
        if m.group(1) not in cfg.locals:
            return Unresolved(value)
        return resolve(cfg, cfg.locals[m.group(1)], depth + 1)
    m = re.fullmatch(r"upper\((.+)\)", expr)
    if m:
        inner = resolve(cfg, "${" + m.group(1) + "}", depth + 1)
        return inner.upper() if isinstance(inner, str) and not isinstance(inner, Unresolved) else Unresolved(value)
    m = re.fullmatch(r"tostring\((.+)\)", expr)
    if m:
        inner = resolve(cfg, "${" + m.group(1) + "}", depth + 1)
        if isinstance(inner, Unresolved) or inner is None:
            return Unresolved(value)
        if isinstance(inner, bool):
            return "true" if inner else "false"
        if isinstance(inner, float) and inner.is_integer():
            inner = int(inner)
        return str(inner)
    return Unresolved(value)


def shown(raw: Any, got: Any) -> str:
    """How a checked value is shown: the expression and, if different, its value."""
    return repr(raw) if raw == got else f"{raw!r} (= {got!r})"


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and not isinstance(value, Unresolved) and re.fullmatch(r"\d+", value):
        return int(value)
    return None


# ---------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------


def ecs_container(cfg: Config, component: str) -> tuple[str, dict]:
    """The container definition (a local object) of a component's task definition."""
    td_name = ECS_TASK_DEFINITIONS[component]
    td = cfg.resource("aws_ecs_task_definition", td_name)
    raw = attr(td, "container_definitions")
    # python-hcl2 renders `jsonencode([local.x])` as "${jsonencode(['${local.x}'])}".
    m = re.fullmatch(r"\$\{jsonencode\(\[\s*'?(?:\$\{)?local\.(\w+)\}?'?\s*\]\)\}", raw or "")
    if not m:
        raise ConfigError(
            f"aws_ecs_task_definition.{td_name}: container_definitions must be jsonencode([local.<name>]) "
            f"so the container can be checked; found {raw!r}"
        )
    local_name = m.group(1)
    container = cfg.locals.get(local_name)
    if not isinstance(container, dict):
        raise ConfigError(f"local.{local_name} (container of aws_ecs_task_definition.{td_name}) is not an object")
    return local_name, container


def ecs_env(cfg: Config, component: str) -> tuple[str, dict[str, Any]]:
    local_name, container = ecs_container(cfg, component)
    where = f"ECS container local.{local_name}"
    want_name = ECS_CONTAINER_NAMES[component]
    if container.get("name") != want_name:
        raise ConfigError(f"{where}: container name is {container.get('name')!r}, expected {want_name!r}")
    if "environmentFiles" in container:
        raise ConfigError(f"{where}: environmentFiles cannot be checked; set variables in 'environment'")
    env: dict[str, Any] = {}
    names: list[str] = []
    for key in ("environment", "secrets"):
        entries = container.get(key, [])
        if not isinstance(entries, list):
            raise ConfigError(f"{where}: '{key}' must be a literal list of {{ name = ..., ... }} objects")
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or expr_of(entry["name"]):
                raise ConfigError(f"{where}: every '{key}' entry needs a literal name; found {entry!r}")
            names.append(entry["name"])
            env[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: variables set more than once: {dupes}")
    return where, env


def lambda_env(cfg: Config, component: str) -> tuple[str, dict[str, Any]]:
    fn_name = LAMBDA_FUNCTIONS[component]
    fn = cfg.resource("aws_lambda_function", fn_name)
    where = f"aws_lambda_function.{fn_name}"
    env_blocks = blocks(fn, "environment")
    if not env_blocks:
        return where, {}
    variables = resolve(cfg, attr(env_blocks[0], "variables"))
    if not isinstance(variables, dict):
        raise ConfigError(f"{where}: environment.variables must be a literal object or a local holding one")
    return where, dict(variables)


def role_policy_documents(cfg: Config, role: str) -> list[str]:
    """Names of the aws_iam_policy_document data sources attached inline to a role.

    Fails for any other way of granting permissions to the role."""
    ref = re.compile(r"aws_iam_role\." + re.escape(role) + r"(\[[^\]]+\])?\.(id|name|arn)")
    docs = []
    for name, body in cfg.resources.get("aws_iam_role_policy", {}).items():
        role_expr = expr_of(attr(body, "role")) or ""
        if not ref.fullmatch(role_expr):
            continue
        policy_expr = expr_of(attr(body, "policy")) or ""
        m = re.fullmatch(r"data\.aws_iam_policy_document\.(\w+)(\[[^\]]+\])?\.json", policy_expr)
        if not m:
            raise ConfigError(
                f"aws_iam_role_policy.{name} (role {role}): policy must be data.aws_iam_policy_document.<name>.json "
                f"so its actions can be checked; found {attr(body, 'policy')!r}"
            )
        docs.append(m.group(1))
    for rtype in ("aws_iam_role_policy_attachment", "aws_iam_policy_attachment",
                  "aws_iam_role_policy_attachments_exclusive", "aws_iam_role_policies_exclusive"):
        for name, body in cfg.resources.get(rtype, {}).items():
            text = json.dumps({k: v for k, v in body.items() if k in ("role", "roles", "role_name")})
            if re.search(r"aws_iam_role\." + re.escape(role) + r"\b", text):
                raise ConfigError(
                    f"{rtype}.{name} grants permissions to role {role} outside an inline policy document; "
                    "grant them with aws_iam_role_policy + data.aws_iam_policy_document so they can be checked"
                )
    role_body = cfg.resource("aws_iam_role", role)
    for key in ("managed_policy_arns", "inline_policy"):
        if key in role_body:
            raise ConfigError(f"aws_iam_role.{role}: '{key}' cannot be checked; use aws_iam_role_policy")
    return docs


def document_statements(cfg: Config, doc: str) -> list[dict]:
    body = cfg.data_source("aws_iam_policy_document", doc)
    for key in ("source_policy_documents", "override_policy_documents", "source_json", "override_json"):
        if key in body:
            raise ConfigError(f"data.aws_iam_policy_document.{doc}: '{key}' cannot be checked")
    statements = list(blocks(body, "statement"))
    for dyn in blocks(body, "dynamic"):
        for label, spec in dyn.items():
            if label == "statement":
                statements.extend(blocks(spec, "content"))
    return statements


def literal_list(value: Any, where: str) -> list[str]:
    value = unwrap(value) if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list) else value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list, found {value!r}")
    return value


def role_grants(cfg: Config, role: str) -> tuple[set[str], list[str], dict[str, list[str]]]:
    """Allowed actions of a role, problems with its resources, and resources per action."""
    actions: set[str] = set()
    problems: list[str] = []
    resources_by_action: dict[str, list[str]] = {}
    for doc in role_policy_documents(cfg, role):
        for i, st in enumerate(document_statements(cfg, doc)):
            where = f"data.aws_iam_policy_document.{doc} statement {attr(st, 'sid') or i}"
            if (attr(st, "effect") or "Allow") != "Allow":
                continue
            for key in ("not_actions", "not_resources"):
                if key in st:
                    raise ConfigError(f"{where}: '{key}' cannot be checked")
            st_actions = literal_list(st.get("actions"), f"{where} actions")
            if any(expr_of(a) or "${" in a for a in st_actions):
                raise ConfigError(f"{where}: actions must be literal strings; found {st_actions!r}")
            st_resources = [resolve(cfg, r) for r in literal_list(st.get("resources"), f"{where} resources")]
            if "*" in st_resources:
                problems.append(f"aws_iam_role.{role}: {where} grants {st_actions} on Resource \"*\"")
            for action in st_actions:
                actions.add(action)
                resources_by_action.setdefault(action, []).extend(st_resources)
    return actions, problems, resources_by_action


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


def check_manifest_shape(manifest: Any) -> list[str]:
    errors = []
    if not isinstance(manifest, dict):
        return ["manifest: not a JSON object"]
    if not isinstance(manifest.get("health_check_path"), str):
        errors.append("manifest: health_check_path missing or not a string")
    if as_int(manifest.get("default_port")) is None:
        errors.append("manifest: default_port missing or not an integer")
    components = manifest.get("components")
    if not isinstance(components, dict):
        return errors + ["manifest: components missing or not an object"]
    for component in ROLES:
        spec = components.get(component)
        if not isinstance(spec, dict):
            errors.append(f"manifest: component {component!r} missing")
            continue
        env = spec.get("env")
        if not isinstance(env, dict) or not isinstance(env.get("required"), list):
            errors.append(f"manifest: components.{component}.env.required missing")
        elif not isinstance(env.get("optional", []), list):
            errors.append(f"manifest: components.{component}.env.optional is not a list")
        if not isinstance(spec.get("aws_actions"), list):
            errors.append(f"manifest: components.{component}.aws_actions missing")
    return errors


def compare_env(component: str, where: str, env: dict[str, Any], manifest: dict) -> list[str]:
    spec = manifest["components"][component]["env"]
    required = set(spec["required"])
    optional = set(spec.get("optional", []))
    names = set(env)
    errors = []
    unknown = names - required - optional
    if unknown:
        errors.append(f"{where} sets {sorted(unknown)}, which the {component} binary does not read "
                      f"(it reads {sorted(required | optional)})")
    missing = required - names
    if missing:
        errors.append(f"{where} does not set {sorted(missing)}, which the {component} binary requires")
    if component.startswith("lambda-"):
        reserved = names & LAMBDA_RESERVED_ENV
        if reserved:
            errors.append(f"{where} sets {sorted(reserved)}, reserved by the Lambda runtime")
    return errors


def check_env(cfg: Config, manifest: dict) -> list[str]:
    errors = []
    for component in [*ECS_TASK_DEFINITIONS, *LAMBDA_FUNCTIONS]:
        try:
            where, env = ecs_env(cfg, component) if component in ECS_TASK_DEFINITIONS else lambda_env(cfg, component)
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        errors += compare_env(component, where, env, manifest)
    return errors


def component_env(cfg: Config, component: str) -> dict[str, Any]:
    if component in ECS_TASK_DEFINITIONS:
        return ecs_env(cfg, component)[1]
    return lambda_env(cfg, component)[1]


def check_iam(cfg: Config, manifest: dict) -> list[str]:
    errors = []
    for component, role in ROLES.items():
        try:
            granted, problems, resources_by_action = role_grants(cfg, role)
            prefix = component_env(cfg, component).get("S3_KEY_PREFIX")
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        errors += problems
        calls = set(manifest["components"][component]["aws_actions"])
        expected = calls | ALLOWED_EXTRA_ACTIONS[component]
        missing = expected - granted
        extra = granted - expected
        if missing:
            errors.append(f"aws_iam_role.{role} ({component}) lacks {sorted(missing)}"
                          + (" which the binary calls" if missing & calls else ""))
        if extra:
            errors.append(f"aws_iam_role.{role} ({component}) grants {sorted(extra)}, which the binary never calls")

        # Writes must stay below the key prefix the component is configured with.
        if "s3:PutObject" in granted and prefix is not None:
            for res in resources_by_action.get("s3:PutObject", []):
                if not (isinstance(res, str) and res.endswith("/" + str(prefix) + "*")):
                    errors.append(f"aws_iam_role.{role} ({component}): s3:PutObject on {res!r} is not limited to "
                                  f"the S3_KEY_PREFIX {prefix!r} (expected <bucket ARN>/{prefix}*)")
    return errors


def check_health_and_port(cfg: Config, manifest: dict) -> list[str]:
    errors = []
    path = manifest["health_check_path"]
    port = as_int(manifest["default_port"])

    checked_api_tg = False
    for name, tg in cfg.resources.get("aws_lb_target_group", {}).items():
        for hc in blocks(tg, "health_check"):
            if "path" not in hc:
                continue
            got = resolve(cfg, attr(hc, "path"))
            if got != path:
                errors.append(f"aws_lb_target_group.{name}: health check path is {shown(attr(hc, 'path'), got)}, "
                              f"the API answers health checks on {path!r}")
            if name == API_TARGET_GROUP:
                checked_api_tg = True
    if not checked_api_tg:
        errors.append(f"aws_lb_target_group.{API_TARGET_GROUP}: no health_check path set")

    tg = cfg.resource("aws_lb_target_group", API_TARGET_GROUP)
    got = as_int(resolve(cfg, attr(tg, "port")))
    if got != port:
        errors.append(f"aws_lb_target_group.{API_TARGET_GROUP}: port is {shown(attr(tg, 'port'), got)}, "
                      f"the API's default port is {port}")

    _, container = ecs_container(cfg, "api")
    mappings = container.get("portMappings") or []
    if not isinstance(mappings, list) or not mappings:
        errors.append("API container: no portMappings")
    for mapping in mappings if isinstance(mappings, list) else []:
        got = as_int(resolve(cfg, mapping.get("containerPort")))
        if got != port:
            errors.append(f"API container: containerPort is {shown(mapping.get('containerPort'), got)}, "
                          f"the API's default port is {port}")

    env = ecs_env(cfg, "api")[1]
    if "PORT" in env:
        got = as_int(resolve(cfg, env["PORT"]))
        if got != port:
            errors.append(f"API container: PORT is {shown(env['PORT'], got)}, the API's default port is {port}")

    service = cfg.resource("aws_ecs_service", API_SERVICE)
    for lb in blocks(service, "load_balancer"):
        got = as_int(resolve(cfg, attr(lb, "container_port")))
        if got != port:
            errors.append(f"aws_ecs_service.{API_SERVICE}: load_balancer container_port is "
                          f"{shown(attr(lb, 'container_port'), got)}, the API's default port is {port}")
    return errors


def tfvars() -> dict:
    """The values production applies with (terraform/production.tfvars.json)."""
    path = Path(__file__).resolve().parents[1] / "production.tfvars.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def variable_values(cfg: Config, name: str) -> list[int]:
    """A number variable's default and, if production sets it, its value."""
    values = []
    default = as_int(resolve(cfg, "${var." + name + "}"))
    if default is not None:
        values.append(default)
    applied = as_int(tfvars().get(name))
    if applied is not None:
        values.append(applied)
    return values


def effective_setting(cfg: Config, component: str, env_name: str, manifest: dict) -> int | None:
    """A setting as the component runs with it: its environment in the
    infrastructure, else the binary's default."""
    env = component_env(cfg, component)
    if env_name in env:
        return as_int(resolve(cfg, env[env_name]))
    return as_int(manifest["components"][component]["env"].get("defaults", {}).get(env_name))


def check_timeouts(cfg: Config, manifest: dict) -> list[str]:
    """Timeouts that must nest: the API's idle keep-alive outlives the ALB's
    idle timeout (else the ALB reuses a connection the API is closing and
    answers 502), and each function's timeout leaves room above the longest
    AWS call its binary makes (else Lambda kills it before it can answer)."""
    errors = []
    keep_alive = effective_setting(cfg, "api", "KEEP_ALIVE_TIMEOUT", manifest)
    if keep_alive is None:
        errors.append("API container: KEEP_ALIVE_TIMEOUT cannot be determined")
    else:
        for idle in variable_values(cfg, "alb_idle_timeout"):
            if not idle < keep_alive:
                errors.append(f"alb_idle_timeout {idle} s is not below the API's keep-alive "
                              f"(KEEP_ALIVE_TIMEOUT {keep_alive} s): the ALB would reuse connections the API closes")
    for component, variable, local in (("lambda-api", "lambda_api_timeout", "lambda_api_call_timeout"),
                                       ("lambda-worker", "lambda_worker_timeout", "lambda_worker_call_timeout")):
        call = as_int(manifest["components"][component].get("aws_call_timeout_secs"))
        declared = as_int(resolve(cfg, "${local." + local + "}"))
        if call is None:
            errors.append(f"manifest: {component} has no aws_call_timeout_secs")
            continue
        if declared != call:
            errors.append(f"local.{local} is {declared}, but {component}'s AWS calls may take {call} s "
                          f"(aws_call_timeout_secs)")
        for timeout in variable_values(cfg, variable):
            if timeout < call + 2:
                errors.append(f"{variable} {timeout} s leaves no room above the {call} s an AWS call of "
                              f"{component} may take (needs at least {call + 2} s)")
    return errors


# ---------------------------------------------------------------------------
# The claim check: staging prefix, its IAM scoping and its lifecycle rule
# ---------------------------------------------------------------------------

STAGING_ENV = "S3_STAGING_PREFIX"
BUCKET_ENV = "S3_BUCKET_NAME"
API_COMPONENTS = ("api", "lambda-api")
WORKER_COMPONENTS = ("worker", "lambda-worker")
QUEUES = ("main", "dlq")  # aws_sqs_queue names: the queue and its dead-letter queue
BUCKET_REF = re.compile(r"^\$\{aws_s3_bucket\.(\w+)\.(?:bucket|id)\}$")
INTERPOLATION = re.compile(r"\$\{((?:var|local)\.\w+)\}")


def render(cfg: Config, value: Any) -> Any:
    """A value with every ${var.X} and ${local.X} that resolves to a string or
    number written out, so that a literal and a variable with that value
    compare equal: "${aws_s3_bucket.emails.arn}/${var.p}*" becomes
    "${aws_s3_bucket.emails.arn}/staging/*"."""
    value = resolve(cfg, value)
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        got = resolve(cfg, "${" + m.group(1) + "}")
        if isinstance(got, Unresolved) or isinstance(got, (bool, dict, list)) or got is None:
            return m.group(0)
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        return str(got)

    rendered = INTERPOLATION.sub(one, value)
    return Unresolved(rendered) if isinstance(value, Unresolved) else rendered


@dataclasses.dataclass
class Grant:
    """One Allow statement of a role: actions, rendered resources, conditions."""
    where: str
    actions: list[str]
    resources: list[Any]
    conditions: list[tuple[Any, Any, list[Any]]]  # (test, variable, values), rendered


def allow_statements(cfg: Config, role: str) -> list[Grant]:
    grants = []
    for doc in role_policy_documents(cfg, role):
        for i, st in enumerate(document_statements(cfg, doc)):
            if (attr(st, "effect") or "Allow") != "Allow":
                continue
            where = f"data.aws_iam_policy_document.{doc} statement {attr(st, 'sid') or i}"
            conditions = []
            for cond in blocks(st, "condition"):
                values = attr(cond, "values")
                values = values if isinstance(values, list) else [values]
                conditions.append((attr(cond, "test"), attr(cond, "variable"), [render(cfg, v) for v in values]))
            grants.append(Grant(where, literal_list(st.get("actions"), f"{where} actions"),
                                [render(cfg, r) for r in literal_list(st.get("resources"), f"{where} resources")],
                                conditions))
    return grants


def effective_string(cfg: Config, component: str, env_name: str, manifest: dict) -> Any:
    """A string setting as the component runs with it: its environment in the
    infrastructure (rendered), else the binary's default (None if neither)."""
    env = component_env(cfg, component)
    if env_name in env:
        return render(cfg, env[env_name])
    return manifest["components"][component]["env"].get("defaults", {}).get(env_name)


def lifecycle_rules(cfg: Config, bucket: str) -> list[dict]:
    rules = []
    for body in cfg.resources.get("aws_s3_bucket_lifecycle_configuration", {}).values():
        ref = expr_of(attr(body, "bucket")) or ""
        if re.fullmatch(r"aws_s3_bucket\." + re.escape(bucket) + r"\.(id|bucket)", ref):
            rules.extend(blocks(body, "rule"))
    return rules


def rule_prefix(cfg: Config, rule: dict) -> Any:
    """The key prefix an S3 lifecycle rule applies to ("" for the whole bucket)."""
    filters = blocks(rule, "filter")
    if not filters:
        return render(cfg, attr(rule, "prefix", ""))
    f = filters[0]
    if "and" in f:
        return render(cfg, attr(blocks(f, "and")[0], "prefix", ""))
    if set(f) - {"prefix", "__start_line__", "__end_line__"}:
        return Unresolved(f"filter {f}")  # tags or sizes: applies to part of the prefix at most
    return render(cfg, attr(f, "prefix", ""))


def check_claim_check(cfg: Config, manifest: dict) -> list[str]:
    """Where the claim check stages emails, who may touch them there, and
    what removes the ones left behind: with the variables' defaults, and
    again with production's values."""
    errors = claim_check_errors(cfg, manifest)
    production = with_tfvars(cfg)
    if production is not None:
        errors += [f"{e} (with production.tfvars.json)" for e in claim_check_errors(production, manifest)
                   if e not in errors]
    return errors


def claim_check_errors(cfg: Config, manifest: dict) -> list[str]:
    errors: list[str] = []
    components = [*API_COMPONENTS, *WORKER_COMPONENTS]

    # One bucket and one staging prefix for every container and function: an
    # API staging where the worker does not look loses the email.
    staging = {c: effective_string(cfg, c, STAGING_ENV, manifest) for c in components}
    buckets = {c: component_env(cfg, c).get(BUCKET_ENV) for c in components}
    for c in API_COMPONENTS:
        if buckets[c] is None:
            errors.append(f"{c}: does not set {BUCKET_ENV}, so it has no bucket to stage emails too large for a "
                          f"queue message in and answers them 413 (the claim check needs it)")
    if len({v for v in staging.values()}) > 1:
        errors.append(f"the containers and functions stage large emails under different prefixes ({STAGING_ENV}, "
                      "or the binary's default where it is not set): "
                      + ", ".join(f"{k} {v!r}" for k, v in sorted(staging.items())))
    named = {c: b for c, b in buckets.items() if b is not None}
    if len(set(named.values())) > 1:
        errors.append(f"the containers and functions name different buckets ({BUCKET_ENV}): "
                      + ", ".join(f"{k} {v!r}" for k, v in sorted(named.items())))
    prefix = staging["worker"]
    m = BUCKET_REF.match(str(buckets["worker"] or ""))
    if not isinstance(prefix, str) or isinstance(prefix, Unresolved) or not m:
        return errors + [f"the worker's staging prefix {prefix!r} or bucket {buckets['worker']!r} cannot be "
                         "determined (expected a literal or a variable, and ${aws_s3_bucket.<name>.bucket})"]
    bucket = m.group(1)
    bucket_arn = f"${{aws_s3_bucket.{bucket}.arn}}"
    staged = f"{bucket_arn}/{prefix}*"
    key_prefix = effective_string(cfg, "worker", "S3_KEY_PREFIX", manifest)
    if isinstance(key_prefix, str) and (prefix.startswith(key_prefix) or key_prefix.startswith(prefix)):
        errors.append(f"the staging prefix {prefix!r} overlaps the key prefix {key_prefix!r}: the lifecycle rule "
                      "expiring staged emails would delete stored ones, and the API could write where they live")

    for component, role in ROLES.items():
        try:
            grants = allow_statements(cfg, role)
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        who = f"aws_iam_role.{role} ({component})"
        if component in API_COMPONENTS:
            # The API's only write: staging. Never where stored emails live.
            for g in grants:
                for res in (g.resources if "s3:PutObject" in g.actions else []):
                    if res != staged:
                        errors.append(f"{who}: {g.where} grants s3:PutObject on {res!r}, beyond the staging prefix "
                                      f"(expected exactly {staged!r})")
            continue
        for action in ("s3:GetObject", "s3:DeleteObject"):
            on = [res for g in grants if action in g.actions for res in g.resources]
            if staged not in on:
                errors.append(f"{who}: lacks {action} on the staging prefix {staged!r}, which the worker needs to "
                              "take a staged email")
            for res in on:
                if res != staged:
                    errors.append(f"{who}: {action} on {res!r}, beyond the staging prefix (expected exactly "
                                  f"{staged!r}): the worker reads and removes only staged emails")
        listing = [g for g in grants if "s3:ListBucket" in g.actions]
        wanted = ("StringLike", "s3:prefix", [f"{prefix}*", f"{key_prefix}*"])
        ok = False
        for g in listing:
            if g.resources != [bucket_arn] or g.conditions != [wanted]:
                errors.append(f"{who}: {g.where} grants s3:ListBucket on {g.resources} with conditions "
                              f"{g.conditions}; expected only {bucket_arn!r} with StringLike s3:prefix "
                              f"{wanted[2]} (a staged email that is gone must answer 404 and its email's key be "
                              "found by name, and nothing else be listed)")
            else:
                ok = True
        if not ok:
            errors.append(f"{who}: lacks s3:ListBucket on {bucket_arn!r} with StringLike s3:prefix "
                          f"{wanted[2]}: a staged email that is gone would answer 403, not 404, or its email's "
                          "key could not be listed, and a redelivered pointer would fail until the dead-letter "
                          "queue instead of counting as stored")

    errors += lifecycle_errors(cfg, bucket, prefix, key_prefix)
    errors += queue_size_errors(cfg)
    return errors


def lifecycle_errors(cfg: Config, bucket: str, prefix: str, key_prefix: Any) -> list[str]:
    """An enabled rule expires the staging prefix later than any pointer can
    live, one aborts incomplete uploads there, and no rule expires stored
    emails."""
    errors = []
    where = f"aws_s3_bucket_lifecycle_configuration of aws_s3_bucket.{bucket}"
    dlq = as_int(resolve(cfg, "${local.dlq_retention_seconds}"))
    retentions = variable_values(cfg, "message_retention_seconds")
    if dlq is None or not retentions:
        return ["the queue's or the dead-letter queue's retention cannot be determined "
                "(var.message_retention_seconds, local.dlq_retention_seconds)"]
    rules = [r for r in lifecycle_rules(cfg, bucket) if attr(r, "status") == "Enabled"]
    staging_rules = []
    for rule in rules:
        name, rule_at = attr(rule, "id"), rule_prefix(cfg, rule)
        expirations = [e for e in blocks(rule, "expiration") if "days" in e or "date" in e]
        if not expirations:
            continue
        if isinstance(key_prefix, str) and isinstance(rule_at, str) and not isinstance(rule_at, Unresolved) and (
                key_prefix.startswith(rule_at) or rule_at.startswith(key_prefix)):
            errors.append(f"{where}: rule {name!r} expires current objects below {rule_at!r}, which reaches "
                          f"stored emails (S3_KEY_PREFIX {key_prefix!r})")
        if rule_at == prefix:
            staging_rules.append(rule)
        for expiration in expirations if rule_at == prefix else []:
            raw = attr(expiration, "days")
            m = re.fullmatch(r"var\.(\w+)", expr_of(raw) or "")
            days = variable_values(cfg, m.group(1)) if m else [d for d in [as_int(resolve(cfg, raw))] if d]
            if not days:
                errors.append(f"{where}: rule {name!r} expires after {raw or attr(expiration, 'date')!r}, which "
                              "cannot be checked (use days: a literal or a variable)")
            for day in days:
                for retention in retentions:
                    if not day * 86400 > retention + dlq:
                        errors.append(f"{where}: rule {name!r} expires staged emails after {day} days, not longer "
                                      f"than a pointer message can live (message_retention_seconds {retention} + "
                                      f"the dead-letter queue's {dlq} s = {(retention + dlq) / 86400:g} days): a "
                                      "staged email whose pointer is still queued would be deleted, and the worker "
                                      "would take it as stored")
    if not staging_rules:
        errors.append(f"{where}: no enabled rule expires objects below the staging prefix {prefix!r}: staged "
                      "emails whose pointer never made it to the queue, or whose removal failed, would stay forever")
    if not any(blocks(r, "abort_incomplete_multipart_upload") for r in rules if rule_prefix(cfg, r) in ("", prefix)):
        errors.append(f"{where}: no enabled rule covering {prefix!r} aborts incomplete multipart uploads")
    return errors


def queue_size_errors(cfg: Config) -> list[str]:
    """The queue and its dead-letter queue state their message size, the same
    (what the queue holds must fit the DLQ; the API reads the queue's)."""
    sizes = {}
    for name in QUEUES:
        raw = attr(cfg.resource("aws_sqs_queue", name), "max_message_size")
        sizes[name] = (raw, as_int(resolve(cfg, raw)))
    missing = [n for n, (raw, _) in sizes.items() if raw is None]
    if missing:
        return [f"aws_sqs_queue {missing}: max_message_size is not set, so it is the provider's default "
                "rather than a stated size"]
    if len({v for _, v in sizes.values()}) != 1 or None in {v for _, v in sizes.values()}:
        return ["aws_sqs_queue: the queue and the dead-letter queue take different (or undeterminable) message "
                "sizes: " + ", ".join(f"{n} {shown(raw, v)}" for n, (raw, v) in sizes.items())]
    return []


# ---------------------------------------------------------------------------
# Settings with a fixed set of values; the key layout; the architecture
# ---------------------------------------------------------------------------

KEY_LAYOUT_ENV = "S3_KEY_LAYOUT"
KEY_LAYOUT_VARIABLE = "s3_key_layout"
ARCHITECTURE_VARIABLE = "architecture"
# runtime_platform's cpu_architecture -> the architecture, as Lambda (and the variable) spell it.
ECS_ARCHITECTURES = {"ARM64": "arm64", "X86_64": "x86_64"}
LAMBDA_ARCHITECTURES = {"arm64", "x86_64"}


def validated_choices(cfg: Config, variable: str) -> list[str] | None:
    """The values a variable's validation accepts, when it is
    contains([...], var.<variable>); None otherwise."""
    body = cfg.variables.get(variable)
    for validation in blocks(body or {}, "validation"):
        cond = attr(validation, "condition")
        m = re.fullmatch(r"\$\{contains\(\[([^\]]*)\],\s*var\." + re.escape(variable) + r"\)\}", str(cond))
        if m:
            return [a or b for a, b in re.findall(r"'([^']*)'|\"([^\"]*)\"", m.group(1))]
    return None


def with_variable(cfg: Config, variable: str, value: Any) -> Config:
    """The configuration with another default for one variable."""
    other = copy.copy(cfg)
    other.variables = {**cfg.variables, variable: {**cfg.variables[variable], "default": [value]}}
    return other


def for_each_choice(cfg: Config, variable: str, errors_of: Callable[[Config], list[str]]) -> list[str]:
    """errors_of with the variable's default, production's value, and each
    value its validation accepts: a setting that follows the variable
    agrees under every one of them, a literal only under some."""
    errors = errors_of(cfg)
    production = with_tfvars(cfg)
    if production is not None:
        errors += [f"{e} (with production.tfvars.json)" for e in errors_of(production) if e not in errors]
    seen = set(errors)
    for choice in validated_choices(cfg, variable) or []:
        for e in errors_of(with_variable(cfg, variable, choice)):
            if e not in seen:
                seen.add(e)
                errors.append(f"{e} (with {variable} = {choice!r})")
    return errors


def check_env_values(cfg: Config, manifest: dict) -> list[str]:
    """Settings with a fixed set of values are set to one the binary accepts;
    every component that stores emails lays their keys out the same way."""
    errors = []
    for component in [*ECS_TASK_DEFINITIONS, *LAMBDA_FUNCTIONS]:
        spec = manifest["components"][component]["env"]
        reads = KEY_LAYOUT_ENV in spec["required"] + spec.get("optional", [])
        if reads and KEY_LAYOUT_ENV not in spec.get("values", {}):
            errors.append(f"manifest: components.{component}.env.values does not say which values {KEY_LAYOUT_ENV} "
                          f"takes, so the layout the infrastructure sets cannot be checked (scripts/manifest.sh "
                          f"asks each binary)")
    readers = [c for c in [*ECS_TASK_DEFINITIONS, *LAMBDA_FUNCTIONS]
               if KEY_LAYOUT_ENV in manifest["components"][c]["env"]["required"]
               + manifest["components"][c]["env"].get("optional", [])]
    choices = validated_choices(cfg, KEY_LAYOUT_VARIABLE)
    if readers and KEY_LAYOUT_VARIABLE in cfg.variables:
        if choices is None:
            errors.append(f"var.{KEY_LAYOUT_VARIABLE} is not validated to a list of layouts "
                          f"(contains([...], var.{KEY_LAYOUT_VARIABLE})), so any value would reach the workers")
        for component in readers:
            accepted = manifest["components"][component]["env"].get("values", {}).get(KEY_LAYOUT_ENV)
            for choice in (choices or []) if accepted is not None else []:
                if choice not in accepted:
                    errors.append(f"var.{KEY_LAYOUT_VARIABLE} accepts {choice!r}, a layout the {component} binary "
                                  f"does not know (it accepts {accepted}): it would refuse to start")
    return errors + for_each_choice(cfg, KEY_LAYOUT_VARIABLE, lambda c: env_value_errors(c, manifest, readers))


def env_value_errors(cfg: Config, manifest: dict, readers: list[str]) -> list[str]:
    errors = []
    for component in [*ECS_TASK_DEFINITIONS, *LAMBDA_FUNCTIONS]:
        where, env = ecs_env(cfg, component) if component in ECS_TASK_DEFINITIONS else lambda_env(cfg, component)
        values = manifest["components"][component]["env"].get("values", {})
        for name, raw in sorted(env.items()):
            if name not in values:
                continue
            got = render(cfg, raw)
            if not isinstance(got, str) or isinstance(got, Unresolved):
                errors.append(f"{where}: {name} is {raw!r}, which cannot be determined (a literal or a variable)")
            elif got not in values[name]:
                errors.append(f"{where} sets {name} to {shown(raw, got)}, which the {component} binary does not "
                              f"accept (it accepts {values[name]}): it would refuse to start")
    layouts = {c: effective_string(cfg, c, KEY_LAYOUT_ENV, manifest) for c in readers}
    if len(set(layouts.values())) > 1:
        errors.append(f"the components that store emails lay their keys out differently ({KEY_LAYOUT_ENV}, or the "
                      "binary's default where it is not set): " + ", ".join(f"{k} {v!r}" for k, v in sorted(
                          layouts.items())) + ": a switch of hosting would change the layout of the stored emails")
    return errors


def lifecycle_ignored(body: dict) -> set[str]:
    """The attributes a resource's lifecycle block ignores changes to."""
    ignored: set[str] = set()
    for lifecycle in blocks(body, "lifecycle"):
        raw = attr(lifecycle, "ignore_changes") or []
        for item in raw if isinstance(raw, list) else [raw]:
            ignored.add(re.sub(r"^\$\{(.*)\}$", r"\1", str(item)))
    return ignored


def check_architecture(cfg: Config, manifest: dict) -> list[str]:
    """Every task definition and function runs on the architecture the one
    variable names, whichever it names."""
    errors = []
    if ARCHITECTURE_VARIABLE not in cfg.variables:
        return [f"no var.{ARCHITECTURE_VARIABLE}: the task definitions and the functions must follow one variable"]
    choices = validated_choices(cfg, ARCHITECTURE_VARIABLE)
    if choices is None:
        errors.append(f"var.{ARCHITECTURE_VARIABLE} is not validated to a list of architectures "
                      f"(contains([...], var.{ARCHITECTURE_VARIABLE}))")
    for name in LAMBDA_FUNCTIONS.values():
        if "architectures" not in lifecycle_ignored(cfg.resource("aws_lambda_function", name)):
            errors.append(f"aws_lambda_function.{name}: architectures is not in lifecycle.ignore_changes, so a change "
                          "of the architecture would reach the function without its code (the provider sends the "
                          "new architecture with the zip recorded at creation); the deploy sets it with the code")
    return errors + for_each_choice(cfg, ARCHITECTURE_VARIABLE, architecture_errors)


def architecture_errors(cfg: Config) -> list[str]:
    errors = []
    wanted = resolve(cfg, "${var." + ARCHITECTURE_VARIABLE + "}")
    runs_on: dict[str, Any] = {}
    for name in ECS_TASK_DEFINITIONS.values():
        where = f"aws_ecs_task_definition.{name}"
        platforms = blocks(cfg.resource("aws_ecs_task_definition", name), "runtime_platform")
        if not platforms:
            errors.append(f"{where}: no runtime_platform, so Fargate runs it on X86_64 whatever "
                          f"var.{ARCHITECTURE_VARIABLE} says")
            continue
        family = resolve(cfg, attr(platforms[0], "operating_system_family"))
        if family != "LINUX":
            errors.append(f"{where}: operating_system_family is {family!r}; the image is for LINUX")
        raw = attr(platforms[0], "cpu_architecture")
        got = resolve(cfg, raw)
        if got not in ECS_ARCHITECTURES:
            errors.append(f"{where}: cpu_architecture is {shown(raw, got)}, not one of {sorted(ECS_ARCHITECTURES)}")
            continue
        runs_on[where] = ECS_ARCHITECTURES[got]
    for name in LAMBDA_FUNCTIONS.values():
        where = f"aws_lambda_function.{name}"
        raw = attr(cfg.resource("aws_lambda_function", name), "architectures")
        if raw is None:
            errors.append(f"{where}: no architectures, so Lambda's default (x86_64) applies whatever "
                          f"var.{ARCHITECTURE_VARIABLE} says")
            continue
        got = [resolve(cfg, v) for v in (raw if isinstance(raw, list) else [raw])]
        if len(got) != 1 or got[0] not in LAMBDA_ARCHITECTURES:
            errors.append(f"{where}: architectures is {shown(raw, got)}, not one of {sorted(LAMBDA_ARCHITECTURES)}")
            continue
        runs_on[where] = got[0]
    for where, arch in sorted(runs_on.items()):
        if arch != wanted:
            errors.append(f"{where} runs on {arch}, but var.{ARCHITECTURE_VARIABLE} is {wanted!r}")
    return errors


# ---------------------------------------------------------------------------
# Metrics: the dashboard and the alarms against what the code emits
# ---------------------------------------------------------------------------

# Namespaces of metrics AWS services publish themselves; anything else is
# ours and must be the namespace the binaries publish to.
AWS_METRIC_NAMESPACE = re.compile(r"^(AWS/.+|ECS/ContainerInsights)$")
TREAT_MISSING_DATA = {"breaching", "notBreaching", "ignore", "missing"}
ALARM_ACTIONS = "var.alarm_actions"  # the one source of every alarm's actions


@dataclasses.dataclass
class MetricRef:
    """One metric a dashboard widget or an alarm reads (raw expressions)."""
    where: str
    namespace: Any
    name: Any
    dimensions: dict[str, Any]


def metric_array(arr: Any, where: str) -> MetricRef | None:
    """A dashboard metric array: [namespace, name, dim, value, ..., {options}]."""
    if not isinstance(arr, list):
        raise ConfigError(f"{where}: a metric must be a literal array, found {arr!r}")
    items = arr[:-1] if arr and isinstance(arr[-1], dict) else list(arr)
    if not items:
        return None  # an expression ({ expression = ... }) reads no metric itself
    if any(isinstance(x, str) and x in (".", "..") for x in items):
        raise ConfigError(f"{where}: the '.' shorthand cannot be checked; spell every metric out ({arr!r})")
    if len(items) < 2 or len(items) % 2 or not all(isinstance(x, str) for x in items):
        raise ConfigError(f"{where}: expected [namespace, name, dimension, value, ..., {{options}}], found {arr!r}")
    return MetricRef(where, items[0], items[1], dict(zip(items[2::2], items[3::2])))


def dashboard_metric_refs(cfg: Config) -> list[MetricRef]:
    """Every metric the dashboards' widgets show. A dashboard body must be
    jsonencode(...) of locals holding literal widget lists."""
    dashboards = cfg.resources.get("aws_cloudwatch_dashboard", {})
    if not dashboards:
        raise ConfigError("no aws_cloudwatch_dashboard found (dashboard.tf)")
    refs: list[MetricRef] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item, where)
        elif isinstance(value, dict):
            title = value.get("title")
            here = f"{where}, widget {title!r}" if isinstance(title, str) else where
            for key, item in value.items():
                if key == "metrics":
                    if not isinstance(item, list):
                        raise ConfigError(f"{here}: 'metrics' must be a literal list, found {item!r}")
                    refs.extend(r for r in (metric_array(a, here) for a in item) if r)
                else:
                    walk(item, here)

    for name, body in dashboards.items():
        raw = attr(body, "dashboard_body")
        used = re.findall(r"\blocal\.(\w+)", raw if isinstance(raw, str) else "")
        if not used:
            raise ConfigError(f"aws_cloudwatch_dashboard.{name}: dashboard_body must be jsonencode() of a local "
                              f"holding the widgets, so that their metrics can be checked; found {raw!r}")
        for local_name in used:
            if local_name not in cfg.locals:
                raise ConfigError(f"aws_cloudwatch_dashboard.{name}: local.{local_name} not found")
            walk(cfg.locals[local_name], f"aws_cloudwatch_dashboard.{name} (local.{local_name})")
    return refs


def alarm_metric_refs(cfg: Config) -> list[MetricRef]:
    """Every metric the alarms read: their own, or their metric_query metrics."""
    refs = []
    for name, body in cfg.resources.get("aws_cloudwatch_metric_alarm", {}).items():
        where = f"aws_cloudwatch_metric_alarm.{name}"
        if "dynamic" in body:
            raise ConfigError(f"{where}: dynamic blocks cannot be checked; write each metric_query out")
        found = []
        if "metric_name" in body:
            found.append((where, body))
        for query in blocks(body, "metric_query"):
            for metric in blocks(query, "metric"):
                found.append((f"{where} metric_query {attr(query, 'id')!r}", metric))
        for here, spec in found:
            dims = resolve(cfg, attr(spec, "dimensions", {}))
            if not isinstance(dims, dict):
                raise ConfigError(f"{here}: dimensions must be a literal map, found {attr(spec, 'dimensions')!r}")
            refs.append(MetricRef(here, attr(spec, "namespace"), attr(spec, "metric_name"), dims))
    return refs


def with_tfvars(cfg: Config) -> Config | None:
    """The configuration with production's values as the variables' defaults
    (None when production.tfvars.json sets none of them)."""
    applied = {k: v for k, v in tfvars().items() if k in cfg.variables}
    if not applied:
        return None
    other = copy.copy(cfg)
    other.variables = {k: ({**v, "default": [applied[k]]} if k in applied else v) for k, v in cfg.variables.items()}
    return other


def published_namespaces(cfg: Config, manifest: dict) -> dict[str, Any]:
    """The namespace each component publishes to: its METRICS_NAMESPACE as the
    infrastructure sets it, else the binary's default."""
    spec = manifest["metrics"]["namespace"]
    out = {}
    for component in [*ECS_TASK_DEFINITIONS, *LAMBDA_FUNCTIONS]:
        env = component_env(cfg, component)
        if spec["env"] in env:
            out[component] = resolve(cfg, env[spec["env"]])
        else:
            defaults = manifest["components"][component]["env"].get("defaults", {})
            out[component] = defaults.get(spec["env"], spec["default"])
    return out


def metrics_spec_problem(manifest: dict) -> str | None:
    metrics = manifest.get("metrics")
    if not isinstance(metrics, dict):
        return ("manifest: no 'metrics' block (namespace, dimension, emitted): these binaries do not say which "
                "metrics they emit (built before issue 16's metrics?), so the metric names, Service values and "
                "namespace of the dashboard and the alarms cannot be checked; build the binaries from a commit "
                "whose `manifest` prints it")
    ns, emitted = metrics.get("namespace"), metrics.get("emitted")
    if not (isinstance(ns, dict) and isinstance(ns.get("env"), str) and isinstance(ns.get("default"), str)):
        return "manifest: metrics.namespace must be {\"env\": ..., \"default\": ...}"
    if not isinstance(metrics.get("dimension"), str):
        return "manifest: metrics.dimension missing or not a string"
    if not (isinstance(emitted, dict) and emitted
            and all(isinstance(v, list) and all(isinstance(n, str) for n in v) for v in emitted.values())):
        return "manifest: metrics.emitted must map each dimension value to the list of metric names"
    return None


def namespace_view(cfg: Config, manifest: dict, refs: list[MetricRef]) -> tuple:
    return (sorted(published_namespaces(cfg, manifest).items()), [resolve(cfg, r.namespace) for r in refs])


def namespace_errors(cfg: Config, manifest: dict, refs: list[MetricRef], suffix: str) -> list[str]:
    """Every component publishes to one namespace, and every metric read
    outside AWS's namespaces is in it."""
    env_name = manifest["metrics"]["namespace"]["env"]
    errors = []
    published = published_namespaces(cfg, manifest)
    unresolved = {k: v for k, v in published.items() if isinstance(v, Unresolved)}
    if unresolved:
        return [f"{env_name} cannot be determined for {sorted(unresolved)}: {sorted(set(unresolved.values()))}"]
    if len(set(published.values())) > 1:
        errors.append(f"the components publish their metrics to different namespaces{suffix} ({env_name}, "
                      f"or the binary's default where it is not set): "
                      + ", ".join(f"{k} {v!r}" for k, v in sorted(published.items())))
    ours_seen = False
    for ref in refs:
        namespace = resolve(cfg, ref.namespace)
        if not isinstance(namespace, str) or isinstance(namespace, Unresolved):
            errors.append(f"{ref.where}: namespace {ref.namespace!r} cannot be determined")
            continue
        if AWS_METRIC_NAMESPACE.match(namespace):
            continue
        ours_seen = True
        strays = {k: v for k, v in published.items() if v != namespace}
        if strays:
            errors.append(f"{ref.where}: reads {ref.name!r} in namespace {shown(ref.namespace, namespace)}{suffix}, "
                          "but " + ", ".join(f"{k} publishes to {v!r}" for k, v in sorted(strays.items()))
                          + f" ({env_name}, or the binary's default where the infrastructure does not set it)")
    if not ours_seen:
        errors.append(f"the dashboard and alarms read no metric in the binaries' namespace{suffix}: nothing the "
                      "code emits would be watched (or this check no longer finds their metrics)")
    return errors


def check_metrics(cfg: Config, manifest: dict) -> list[str]:
    """The dashboard and alarms read, in our namespace, only metrics the code
    emits, under the dimension and values it emits them with; and the
    namespace they read is the one every component publishes to."""
    problem = metrics_spec_problem(manifest)
    if problem:
        return [problem]
    spec = manifest["metrics"]
    dimension = spec["dimension"]
    emitted = {service: set(names) for service, names in spec["emitted"].items()}
    refs = dashboard_metric_refs(cfg) + alarm_metric_refs(cfg)
    errors: list[str] = []

    # With the variables' defaults, and again with production's values when
    # they change a namespace (a literal on one side and the variable on the
    # other would agree only until someone sets metrics_namespace).
    errors += namespace_errors(cfg, manifest, refs, "")
    production = with_tfvars(cfg)
    if production is not None and (namespace_view(production, manifest, refs)
                                   != namespace_view(cfg, manifest, refs)):
        errors += namespace_errors(production, manifest, refs, " with production.tfvars.json")

    for ref in refs:
        namespace = resolve(cfg, ref.namespace)
        if not isinstance(namespace, str) or AWS_METRIC_NAMESPACE.match(namespace):
            continue
        name = resolve(cfg, ref.name)
        dims = {k: resolve(cfg, v) for k, v in ref.dimensions.items()}
        if set(dims) != {dimension}:
            errors.append(f"{ref.where}: {name!r} is read with dimensions {sorted(dims)}, but the binaries "
                          f"publish every metric with exactly one dimension, {dimension!r}")
            continue
        service = dims[dimension]
        if service not in emitted:
            errors.append(f"{ref.where}: {dimension}={service!r} is not a value the binaries publish "
                          f"(they publish {sorted(emitted)})")
        elif name not in emitted[service]:
            elsewhere = sorted(s for s, names in emitted.items() if name in names)
            errors.append(f"{ref.where}: {name!r} with {dimension}={service!r} is not emitted by the {service} "
                          + (f"(the {', '.join(elsewhere)} emits it)" if elsewhere
                             else f"(it emits {sorted(emitted[service])})"))
    return errors


def check_alarms(cfg: Config, manifest: dict) -> list[str]:
    """Every alarm tells the same people (var.alarm_actions) when it fires and
    when it clears, says what to do, and treats missing data deliberately."""
    errors = []
    alarms = cfg.resources.get("aws_cloudwatch_metric_alarm", {})
    if not alarms:
        errors.append("no aws_cloudwatch_metric_alarm found (alarms.tf)")
    for name, body in alarms.items():
        where = f"aws_cloudwatch_metric_alarm.{name}"
        for key in ("alarm_actions", "ok_actions"):
            raw = attr(body, key)
            if expr_of(raw) != ALARM_ACTIONS:
                errors.append(f"{where}: {key} is {raw!r}; every alarm notifies {ALARM_ACTIONS} "
                              "when it fires and when it clears")
        raw = attr(body, "insufficient_data_actions")
        if raw is not None and expr_of(raw) != ALARM_ACTIONS:
            errors.append(f"{where}: insufficient_data_actions is {raw!r}; alarm actions come from {ALARM_ACTIONS} only")
        treat = attr(body, "treat_missing_data")
        if treat not in TREAT_MISSING_DATA:
            errors.append(f"{where}: treat_missing_data is {treat!r}; set it deliberately "
                          f"(one of {sorted(TREAT_MISSING_DATA)})")
        description = attr(body, "alarm_description")
        if not isinstance(description, str) or len(description.strip()) < 40:
            errors.append(f"{where}: alarm_description {description!r} is not a runbook line "
                          "(what it means, what to check, what to do)")
    return errors


def run_checks(cfg: Config, manifest: dict) -> list[str]:
    errors = check_manifest_shape(manifest)
    if errors:
        return errors
    for check in (check_env, check_iam, check_health_and_port, check_timeouts, check_claim_check,
                  check_env_values, check_architecture, check_metrics, check_alarms):
        try:
            errors += check(cfg, manifest)
        except ConfigError as exc:
            errors.append(str(exc))
    return errors


# ---------------------------------------------------------------------------
# Self-test: every deliberate mismatch must be reported
# ---------------------------------------------------------------------------


def _doc_of(cfg: Config, role: str) -> dict:
    return cfg.data_source("aws_iam_policy_document", role_policy_documents(cfg, role)[0])


def _statement_with(cfg: Config, role: str, action: str) -> dict:
    for doc in role_policy_documents(cfg, role):
        for st in document_statements(cfg, doc):
            if action in literal_list(st.get("actions"), "self-test"):
                return st
    raise AssertionError(f"self-test: no statement with {action} for role {role}")


def _remove_action(cfg: Config, role: str, action: str) -> None:
    st = _statement_with(cfg, role, action)
    st["actions"] = [[a for a in literal_list(st["actions"], "self-test") if a != action]]


def _ecs_env_list(cfg: Config, component: str) -> list[dict]:
    return ecs_container(cfg, component)[1]["environment"]


def _lambda_vars(cfg: Config, component: str) -> dict:
    fn = cfg.resource("aws_lambda_function", LAMBDA_FUNCTIONS[component])
    env_block = blocks(fn, "environment")[0]
    value = attr(env_block, "variables")
    expr = expr_of(value)
    if expr and expr.startswith("local."):
        return cfg.locals[expr[len("local."):]]
    return value


def _lifecycle_rule(cfg: Config, rule_id: str) -> dict:
    for rule in blocks(cfg.resource("aws_s3_bucket_lifecycle_configuration", "emails"), "rule"):
        if attr(rule, "id") == rule_id:
            return rule
    raise AssertionError(f"self-test: no lifecycle rule {rule_id}")


def _drop_lifecycle_rule(cfg: Config, rule_id: str) -> None:
    body = cfg.resource("aws_s3_bucket_lifecycle_configuration", "emails")
    body["rule"] = [r for r in blocks(body, "rule") if attr(r, "id") != rule_id]


def _set_default(cfg: Config, variable: str, value: Any) -> None:
    cfg.variables[variable]["default"] = [value]


def _alarm(cfg: Config, name: str) -> dict:
    return cfg.resource("aws_cloudwatch_metric_alarm", name)


def _alarm_query_metric(cfg: Config, alarm: str, query_id: str) -> dict:
    for query in blocks(_alarm(cfg, alarm), "metric_query"):
        if attr(query, "id") == query_id:
            return blocks(query, "metric")[0]
    raise AssertionError(f"self-test: alarm {alarm} has no metric_query {query_id}")


def _widget_metric(cfg: Config, title: str, metric_name: str) -> list:
    """The metric array of a dashboard widget (found by its title), to mutate."""
    for entry in cfg.locals["dashboard_widgets"]:
        properties = entry["widget"].get("properties", {})
        if properties.get("title") == title:
            for arr in properties["metrics"]:
                if len(arr) > 1 and arr[1] == metric_name:
                    return arr
    raise AssertionError(f"self-test: no widget {title!r} showing {metric_name}")


def _watch_nothing_of_ours(cfg: Config, manifest: dict) -> None:
    for entry in cfg.locals["dashboard_widgets"]:
        for arr in entry["widget"].get("properties", {}).get("metrics", []):
            arr[0] = "AWS/SQS"
    for name in ("store_failures", "api_unavailable"):
        cfg.resources["aws_cloudwatch_metric_alarm"].pop(name)


def _env_entry(cfg: Config, component: str, name: str) -> dict:
    return next(e for e in _ecs_env_list(cfg, component) if e["name"] == name)


def _allow_also(cfg: Config, variable: str, value: str) -> None:
    """The variable's validation accepts one more value."""
    validation = blocks(cfg.variables[variable], "validation")[0]
    choices = validated_choices(cfg, variable) or []
    listed = ", ".join(f"'{v}'" for v in [*choices, value])
    validation["condition"] = [f"${{contains([{listed}],var.{variable})}}"]


def _runtime_platform(cfg: Config, task_definition: str) -> dict:
    return blocks(cfg.resource("aws_ecs_task_definition", task_definition), "runtime_platform")[0]


def _stop_ignoring(cfg: Config, function: str, attribute: str) -> None:
    for lifecycle in blocks(cfg.resource("aws_lambda_function", function), "lifecycle"):
        ignored = attr(lifecycle, "ignore_changes")
        lifecycle["ignore_changes"] = [[i for i in ignored if i != "${" + attribute + "}"]]


Mutation = Callable[[Config, dict], None]


def _mutations() -> list[tuple[str, str, Mutation]]:
    """(description, text the failure must contain, mutation)."""
    return [
        ("binary requires a new variable the api container does not set", "NEW_REQUIRED_SETTING",
         lambda c, m: m["components"]["api"]["env"]["required"].append("NEW_REQUIRED_SETTING")),
        ("binary stops reading PORT, which the api container still sets", "PORT",
         lambda c, m: m["components"]["api"]["env"]["optional"].remove("PORT")),
        ("worker container sets a variable nobody reads", "UNREAD_SETTING",
         lambda c, m: _ecs_env_list(c, "worker").append({"name": "UNREAD_SETTING", "value": "x"})),
        ("worker container drops its required bucket name", "S3_BUCKET_NAME",
         lambda c, m: _ecs_env_list(c, "worker").__setitem__(
             slice(None), [e for e in _ecs_env_list(c, "worker") if e["name"] != "S3_BUCKET_NAME"])),
        ("Lambda API function sets the reserved AWS_REGION", "reserved by the Lambda runtime",
         lambda c, m: _lambda_vars(c, "lambda-api").__setitem__("AWS_REGION", "${var.region}")),
        ("Lambda API function drops TOKEN_PARAM_NAME", "TOKEN_PARAM_NAME",
         lambda c, m: _lambda_vars(c, "lambda-api").pop("TOKEN_PARAM_NAME")),
        ("binary starts calling s3:GetObjectAttributes", "s3:GetObjectAttributes",
         lambda c, m: m["components"]["worker"]["aws_actions"].append("s3:GetObjectAttributes")),
        ("api task role gets an action the binary never calls", "sqs:PurgeQueue",
         lambda c, m: _doc_of(c, ROLES["api"])["statement"].append(
             {"actions": [["sqs:PurgeQueue"]], "resources": [["${aws_sqs_queue.main.arn}"]]})),
        ("worker task role loses sqs:ChangeMessageVisibility", "sqs:ChangeMessageVisibility",
         lambda c, m: _remove_action(c, ROLES["worker"], "sqs:ChangeMessageVisibility")),
        ("Lambda worker role loses an event source mapping action", "sqs:GetQueueAttributes",
         lambda c, m: _remove_action(c, ROLES["lambda-worker"], "sqs:GetQueueAttributes")),
        ("Lambda API role loses its log permissions", "logs:PutLogEvents",
         lambda c, m: _remove_action(c, ROLES["lambda-api"], "logs:PutLogEvents")),
        ("api task role grants on Resource \"*\"", "Resource \"*\"",
         lambda c, m: _statement_with(c, ROLES["api"], "sqs:SendMessage").__setitem__("resources", [["*"]])),
        ("worker may write anywhere in the bucket", "S3_KEY_PREFIX",
         lambda c, m: _statement_with(c, ROLES["worker"], "s3:PutObject").__setitem__(
             "resources", [["${aws_s3_bucket.emails.arn}/*"]])),
        ("a managed policy is attached to the worker task role", "outside an inline policy document",
         lambda c, m: c.resources.setdefault("aws_iam_role_policy_attachment", {}).__setitem__(
             "extra", {"role": ["${aws_iam_role.worker_task[0].name}"],
                       "policy_arn": ["arn:aws:iam::aws:policy/AmazonS3FullAccess"]})),
        ("binary moves its health check to /healthz", "/healthz",
         lambda c, m: m.__setitem__("health_check_path", "/healthz")),
        ("target group health-checks another path", "/status",
         lambda c, m: blocks(c.resource("aws_lb_target_group", API_TARGET_GROUP), "health_check")[0]
         .__setitem__("path", ["/status"])),
        ("binary's default port becomes 9000", "9000",
         lambda c, m: m.__setitem__("default_port", 9000)),
        ("api container listens on another port", "containerPort",
         lambda c, m: ecs_container(c, "api")[1]["portMappings"][0].__setitem__("containerPort", 8080)),
        ("manifest lacks a component", "lambda-worker",
         lambda c, m: m["components"].pop("lambda-worker")),
        ("the ALB keeps idle connections longer than the API", "alb_idle_timeout",
         lambda c, m: c.variables["alb_idle_timeout"].__setitem__("default", [90])),
        ("the API's keep-alive drops below the ALB's idle timeout", "KEEP_ALIVE_TIMEOUT",
         lambda c, m: c.variables["api_keep_alive_timeout"].__setitem__("default", [30])),
        ("the worker's S3 calls may take longer than its function's timeout", "lambda_worker_timeout",
         lambda c, m: m["components"]["lambda-worker"].__setitem__("aws_call_timeout_secs", 120)),
        ("the API function's timeout shrinks to its SDK timeout", "lambda_api_timeout",
         lambda c, m: c.variables["lambda_api_timeout"].__setitem__("default", [5])),
        # The claim check: staging prefix, IAM scoping, lifecycle rule, queue size.
        ("the API task role may write anywhere in the bucket", "beyond the staging prefix",
         lambda c, m: _statement_with(c, ROLES["api"], "s3:PutObject").__setitem__(
             "resources", [["${aws_s3_bucket.emails.arn}/*"]])),
        ("the API function role may write where stored emails live", "beyond the staging prefix",
         lambda c, m: _statement_with(c, ROLES["lambda-api"], "s3:PutObject").__setitem__(
             "resources", [["${local.email_objects_arn}"]])),
        ("the worker task role reads and deletes stored emails instead of staged ones",
         "lacks s3:GetObject on the staging prefix",
         lambda c, m: _statement_with(c, ROLES["worker"], "s3:GetObject").__setitem__(
             "resources", [["${local.email_objects_arn}"]])),
        ("the worker function role may delete any object as well", "s3:DeleteObject on '${aws_s3_bucket.emails.arn}/*'",
         lambda c, m: _statement_with(c, ROLES["lambda-worker"], "s3:DeleteObject").__setitem__(
             "resources", [["${local.staged_objects_arn}", "${aws_s3_bucket.emails.arn}/*"]])),
        ("the worker's s3:ListBucket loses its s3:prefix condition", "lacks s3:ListBucket",
         lambda c, m: _statement_with(c, ROLES["worker"], "s3:ListBucket").pop("condition")),
        ("the worker function's s3:ListBucket condition names only the key prefix", "StringLike s3:prefix",
         lambda c, m: _statement_with(c, ROLES["lambda-worker"], "s3:ListBucket")["condition"][0].__setitem__(
             "values", [["${var.s3_key_prefix}*"]])),
        ("the worker function stages under another prefix than the API", "under different prefixes",
         lambda c, m: _lambda_vars(c, "lambda-worker").__setitem__("S3_STAGING_PREFIX", "claims/")),
        ("the API container stops setting S3_STAGING_PREFIX while the variable moves off the binary's default",
         "api 'staging/'",
         lambda c, m: (_ecs_env_list(c, "api").__setitem__(
             slice(None), [e for e in _ecs_env_list(c, "api") if e["name"] != "S3_STAGING_PREFIX"]),
             _set_default(c, "s3_staging_prefix", "claims/"))),
        ("the API function has no bucket to stage large emails in", "no bucket to stage",
         lambda c, m: _lambda_vars(c, "lambda-api").pop("S3_BUCKET_NAME")),
        ("the staging prefix lies inside the key prefix", "overlaps the key prefix",
         lambda c, m: _set_default(c, "s3_staging_prefix", "emails/staging/")),
        ("the lifecycle rule on the staging prefix is gone", "no enabled rule expires objects below the staging",
         lambda c, m: _drop_lifecycle_rule(c, "expire-staged-emails")),
        ("the lifecycle rule on the staging prefix is disabled", "no enabled rule expires objects below the staging",
         lambda c, m: _lifecycle_rule(c, "expire-staged-emails").__setitem__("status", ["Disabled"])),
        ("staged emails expire while their pointer may still be in the dead-letter queue",
         "expires staged emails after 14 days",
         lambda c, m: _set_default(c, "s3_staging_expiration_days", 14)),
        ("the queue keeps messages 14 days and staged emails expire after 25", "= 28 days",
         lambda c, m: (_set_default(c, "message_retention_seconds", 1209600),
                       _set_default(c, "s3_staging_expiration_days", 25))),
        ("the expiring rule points at the stored emails", "reaches stored emails",
         lambda c, m: _lifecycle_rule(c, "expire-staged-emails")["filter"][0].__setitem__(
             "prefix", ["${var.s3_key_prefix}"])),
        ("no rule aborts incomplete uploads below the staging prefix", "aborts incomplete multipart uploads",
         lambda c, m: [r.pop("abort_incomplete_multipart_upload", None)
                       for r in blocks(c.resource("aws_s3_bucket_lifecycle_configuration", "emails"), "rule")]),
        ("the dead-letter queue takes smaller messages than the queue", "take different",
         lambda c, m: c.resource("aws_sqs_queue", "dlq").__setitem__("max_message_size", [1024])),
        ("the queue leaves its message size to the provider's default", "max_message_size is not set",
         lambda c, m: c.resource("aws_sqs_queue", "main").pop("max_message_size")),
        # Settings with a fixed set of values, and one key layout for every worker.
        ("the worker container sets a key layout the binary does not accept", "'hash', which the worker binary",
         lambda c, m: _env_entry(c, "worker", "S3_KEY_LAYOUT").__setitem__("value", "hash")),
        ("the worker container sets a log format the binary does not accept", "LOG_FORMAT to 'pretty'",
         lambda c, m: _ecs_env_list(c, "worker").append({"name": "LOG_FORMAT", "value": "pretty"})),
        ("the worker function stops setting S3_KEY_LAYOUT (only the hashed layout shows it)",
         "lambda-worker 'time', worker 'hashed'",
         lambda c, m: _lambda_vars(c, "lambda-worker").pop("S3_KEY_LAYOUT")),
        ("the worker container names the time layout instead of the variable", "lay their keys out differently",
         lambda c, m: _env_entry(c, "worker", "S3_KEY_LAYOUT").__setitem__("value", "time")),
        ("s3_key_layout accepts a layout the binaries do not know", "accepts 'spread'",
         lambda c, m: _allow_also(c, "s3_key_layout", "spread")),
        ("s3_key_layout is no longer validated", "var.s3_key_layout is not validated",
         lambda c, m: c.variables["s3_key_layout"].pop("validation")),
        ("the worker binary stops accepting the hashed layout the variable sets",
         "'hashed'), which the worker binary does not accept",
         lambda c, m: (m["components"]["worker"]["env"]["values"]["S3_KEY_LAYOUT"].remove("hashed"),
                       _set_default(c, "s3_key_layout", "hashed"))),
        ("the manifest does not say which layouts the worker function takes", "does not say which values",
         lambda c, m: m["components"]["lambda-worker"]["env"]["values"].pop("S3_KEY_LAYOUT")),
        # One architecture for the task definitions and the functions.
        ("the worker task definition is pinned to X86_64", "aws_ecs_task_definition.worker runs on x86_64",
         lambda c, m: _runtime_platform(c, "worker").__setitem__("cpu_architecture", ["X86_64"])),
        ("the API function is pinned to arm64 (only x86_64 shows it)",
         "aws_lambda_function.api runs on arm64, but var.architecture is 'x86_64'",
         lambda c, m: c.resource("aws_lambda_function", "api").__setitem__("architectures", [["arm64"]])),
        ("the API task definition loses its runtime_platform", "no runtime_platform",
         lambda c, m: c.resource("aws_ecs_task_definition", "api").pop("runtime_platform")),
        ("the worker function leaves its architecture to Lambda's default", "Lambda's default (x86_64)",
         lambda c, m: c.resource("aws_lambda_function", "worker").pop("architectures")),
        ("Terraform would change the worker function's architecture without its code", "ignore_changes",
         lambda c, m: _stop_ignoring(c, "worker", "architectures")),
        ("the architecture variable accepts a name neither ECS nor Lambda knows", "'AMD64'",
         lambda c, m: _allow_also(c, "architecture", "amd64")),
        ("a task definition asks for Windows", "operating_system_family is 'WINDOWS_SERVER_2022_CORE'",
         lambda c, m: _runtime_platform(c, "api").__setitem__("operating_system_family",
                                                              ["WINDOWS_SERVER_2022_CORE"])),
        # Metrics: names, dimension and namespace against the manifest's "metrics".
        ("an alarm reads a misspelt metric", "'EmailsStoredd' with Service='worker' is not emitted",
         lambda c, m: _alarm(c, "store_failures").__setitem__("metric_name", ["EmailsStoredd"])),
        ("a dashboard widget reads a worker metric under Service api", "'EmailsStored' with Service='api'",
         lambda c, m: _widget_metric(c, "Accepted vs stored per minute", "EmailsStored").__setitem__(3, "api")),
        ("a dashboard widget reads a Service value nobody publishes", "Service='dev' is not a value",
         lambda c, m: _widget_metric(c, "API latency, POST /email (ms)", "ApiLatency").__setitem__(3, "dev")),
        ("an alarm's metric query reads a metric the API does not emit", "'EmailsRejected' with Service='api'",
         lambda c, m: _alarm_query_metric(c, "api_unavailable", "accepted").__setitem__(
             "metric_name", ["EmailsRejected"])),
        ("the code stops emitting a metric an alarm reads",
         "aws_cloudwatch_metric_alarm.store_failures: 'StoreFailures' with Service='worker' is not emitted",
         lambda c, m: m["metrics"]["emitted"]["worker"].remove("StoreFailures")),
        ("an alarm reads our metric with another dimension", "exactly one dimension, 'Service'",
         lambda c, m: _alarm(c, "store_failures").__setitem__("dimensions", [{"Function": "worker"}])),
        ("an alarm reads our metric in another namespace", "'Queue2Bucket-old'",
         lambda c, m: _alarm(c, "store_failures").__setitem__("namespace", ["Queue2Bucket-old"])),
        ("the worker container publishes to another namespace", "worker publishes to 'Elsewhere'",
         lambda c, m: next(e for e in _ecs_env_list(c, "worker") if e["name"] == "METRICS_NAMESPACE")
         .__setitem__("value", "Elsewhere")),
        ("the worker function stops setting METRICS_NAMESPACE, and the variable's default changes",
         "lambda-worker publishes to 'Queue2Bucket'",
         lambda c, m: (_lambda_vars(c, "lambda-worker").pop("METRICS_NAMESPACE"),
                       c.variables["metrics_namespace"].__setitem__("default", ["Custom"]))),
        ("the dashboard and alarms read none of the binaries' metrics", "read no metric in the binaries' namespace",
         _watch_nothing_of_ours),
        ("a dashboard widget uses the '.' shorthand", "shorthand",
         lambda c, m: _widget_metric(c, "Accepted vs stored per minute", "EmailsStored").__setitem__(0, ".")),
        ("the binaries' manifest has no metrics block", "no 'metrics' block",
         lambda c, m: m.pop("metrics")),
        # Alarms: one source of actions, missing data chosen, a runbook line.
        ("an alarm tells nobody when it clears", "ok_actions",
         lambda c, m: _alarm(c, "queue_age").pop("ok_actions")),
        ("an alarm notifies a topic of its own", "alarm_actions is",
         lambda c, m: _alarm(c, "alb_5xx").__setitem__("alarm_actions", [["arn:aws:sns:us-east-2:123456789012:ops"]])),
        ("an alarm leaves missing data to CloudWatch's default", "treat_missing_data",
         lambda c, m: _alarm(c, "store_failures").pop("treat_missing_data")),
        ("an alarm without a runbook line", "not a runbook line",
         lambda c, m: _alarm(c, "dlq_not_empty").pop("alarm_description")),
    ]


def self_test(cfg: Config, manifest: dict) -> int:
    baseline = run_checks(cfg, manifest)
    if baseline:
        print("self-test: the unmodified configuration must pass first, but:")
        for err in baseline:
            print(f"  - {err}")
        return 1
    print("self-test: unmodified configuration passes")
    failures = 0
    for description, needle, mutate in _mutations():
        c, m = copy.deepcopy(cfg), copy.deepcopy(manifest)
        try:
            mutate(c, m)
        except Exception as exc:  # the mutation itself no longer applies
            print(f"  FAIL  {description}: could not apply the mutation ({exc!r})")
            failures += 1
            continue
        errors = run_checks(c, m)
        if any(needle in e for e in errors):
            print(f"  ok    {description}")
            print(f"          reported: {next(e for e in errors if needle in e)}")
        else:
            print(f"  FAIL  {description}: not reported (errors: {errors or 'none'})")
            failures += 1
    if failures:
        print(f"self-test: {failures} deliberate mismatch(es) went unnoticed")
        return 1
    print(f"self-test: all {len(_mutations())} deliberate mismatches were reported")
    return 0


# ---------------------------------------------------------------------------


def load_manifest(path: str) -> dict:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        return json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"test_consistency: cannot read manifest {path}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", help="JSON printed by `queue2bucket manifest` ('-' for stdin)")
    parser.add_argument("--self-test", action="store_true",
                        help="prove the checks fail on deliberate mismatches (uses the documented "
                             "reference manifest when --manifest is not given)")
    parser.add_argument("--terraform-dir", type=Path, default=TERRAFORM_DIR,
                        help=f"root module to check (default: {TERRAFORM_DIR})")
    args = parser.parse_args(argv)

    if args.manifest:
        manifest = load_manifest(args.manifest)
    elif args.self_test:
        manifest = copy.deepcopy(REFERENCE_MANIFEST)
    else:
        parser.error("--manifest is required (run `target/debug/queue2bucket manifest > FILE`)")

    try:
        cfg = Config.load(args.terraform_dir)
    except ConfigError as exc:
        print(f"test_consistency: {exc}")
        return 2

    if args.self_test:
        return self_test(cfg, manifest)

    errors = run_checks(cfg, manifest)
    if errors:
        print(f"test_consistency: {len(errors)} mismatch(es) between {args.terraform_dir} and the manifest:")
        for err in errors:
            print(f"  - {err}")
        return 1
    print("test_consistency: environment variables (and the values the binaries accept), IAM actions, health "
          "check path and port, timeouts, the claim check's staging prefix (IAM scoping, lifecycle rule, queue "
          "size), one key layout, one architecture, and the metrics of the dashboard and alarms match the "
          "manifest; every alarm notifies alarm_actions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
