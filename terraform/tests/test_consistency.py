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
- a load balancer target group health-checks another path than the API's
  health_check_path, or the container/target port differs from default_port.

Usage:
    test_consistency.py --manifest FILE            # FILE may be '-' for stdin
    test_consistency.py --self-test [--manifest FILE]

--self-test first checks the real configuration, then applies a series of
deliberate mismatches to copies of the parsed configuration and manifest and
asserts that each one is reported, proving the checks can fail.
"""

from __future__ import annotations

import argparse
import copy
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

# The documented manifest format; used by --self-test when no --manifest is given.
REFERENCE_MANIFEST: dict[str, Any] = {
    "health_check_path": "/",
    "default_port": 8000,
    "components": {
        "api": {
            "env": {
                "required": ["SQS_QUEUE_URL", "TOKEN_PARAM_NAME"],
                "optional": ["AWS_REGION", "PORT", "TOKEN_CACHE_TTL", "TOKEN_REFRESH_INTERVAL",
                             "MAX_CONCURRENT_REQUESTS", "REQUEST_TIMEOUT", "LOG_FORMAT", "RUST_LOG"],
            },
            "aws_actions": ["sqs:SendMessage", "ssm:GetParameter"],
        },
        "worker": {
            "env": {
                "required": ["SQS_QUEUE_URL", "S3_BUCKET_NAME"],
                "optional": ["AWS_REGION", "POLL_INTERVAL", "S3_KEY_PREFIX", "WORKER_CONCURRENCY",
                             "LOG_FORMAT", "RUST_LOG"],
            },
            "aws_actions": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                            "sqs:GetQueueAttributes", "s3:PutObject"],
        },
        "lambda-api": {
            "env": {
                "required": ["SQS_QUEUE_URL", "TOKEN_PARAM_NAME"],
                "optional": ["TOKEN_CACHE_TTL", "TOKEN_REFRESH_INTERVAL", "LOG_FORMAT", "RUST_LOG"],
            },
            "aws_actions": ["sqs:SendMessage", "ssm:GetParameter"],
        },
        "lambda-worker": {
            "env": {"required": ["S3_BUCKET_NAME"], "optional": ["S3_KEY_PREFIX", "LOG_FORMAT", "RUST_LOG"]},
            "aws_actions": ["s3:PutObject"],
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


def run_checks(cfg: Config, manifest: dict) -> list[str]:
    errors = check_manifest_shape(manifest)
    if errors:
        return errors
    for check in (check_env, check_iam, check_health_and_port, check_timeouts):
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
        ("binary starts calling s3:GetObject", "s3:GetObject",
         lambda c, m: m["components"]["worker"]["aws_actions"].append("s3:GetObject")),
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
    print("test_consistency: environment variables, IAM actions, health check path and port match the manifest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
