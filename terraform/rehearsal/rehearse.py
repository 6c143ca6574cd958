#!/usr/bin/env python3
"""The deploy rehearsal: terraform/ applied to moto, and the product run on it.

Run through scripts/rehearse.sh. For each hosting (fargate, lambda), from an
empty emulator and an empty state:

 1. apply    moto (with the extensions of moto_server.py) on a free loopback
             port; `terraform apply` of terraform/ with production.tfvars.json
             and the override in this directory. The Lambda hosting runs on
             the architecture of the binaries under test (their zips hold
             them, and the deploy refuses zips of another architecture) and
             with the other key layout than production's, so that both
             values of each variable are rehearsed (architecture: when
             production names another one than this machine's).
 2. deploy   the deploy workflow's own script (scripts/deploy.sh) against it,
             with the image pushed as the release workflow pushes it, or
             the zips of the functions' architecture (after zips of the
             other one are refused).
 3. drift    the pull-request plan (`-refresh=false`, as the plan role runs
             it) and the apply job's plan (with refresh) must both show no
             change after that deploy.
 4. run      the binaries, started from what Terraform created: the ECS
             services' task definitions (command and environment of each
             container) or the functions' configurations, behind stand-ins for
             the ALB, the Lambda Runtime API and the SQS event source mapping
             (standins.py), each configured from the created resources.
 5. test     the system test workflow's own script (scripts/system-test.sh):
             health check, POST /email with the token from Parameter Store,
             the object read back byte for byte, 401 for a wrong token; then a
             large email, over the queue's message size, through the claim
             check (staged by the API, stored byte for byte by the worker,
             nothing left below the staging prefix), its pointer delivered
             again (acknowledged as stored, no second object); then a poison
             message must reach the dead-letter queue.
 6. check    what the resources say against what the code needs: every IAM
             action of the manifest allowed on the exact ARN by the role of the
             component that calls it (and every other component's action
             denied), every AWS call actually made during the run allowed to
             the role that made it (each actor signs with its own access key),
             the environments against the variables the binaries read, the
             architecture of the task definitions (every revision) or the
             functions and the key layout against the variables, the
             health check path, the queues' settings against the README, the
             bucket's lifecycle rule on the staging prefix against the queues'
             retention, the GitHub roles' subjects and the plan role's denies,
             the token absent from the state.
 7. destroy  `terraform destroy`, then nothing may be left in the emulator.

Every failure is reported with what was expected; the only departures from
AWS are the documented gaps filled by moto_server.py and the stand-ins.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import hcl2
from botocore.config import Config as BotoConfig

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import iam_policy  # noqa: E402
import standins  # noqa: E402
from moto_server import GAPS  # noqa: E402

REPO = HERE.parents[1]
TF_DIR = REPO / "terraform"
TFVARS = TF_DIR / "production.tfvars.json"
ACCOUNT = "123456789012"  # moto's account
HOSTINGS = ("fargate", "lambda")

# One access key per actor, so that moto_server.py's request log tells which
# role made each call (moto accepts any key).
KEYS = {
    "terraform": "AKIAREHEARSETERRAFRM",  # the Terraform role (apply, destroy)
    "plan": "AKIAREHEARSETFPLAN00",  # the pull-request plan role
    "deploy": "AKIAREHEARSEDEPLOY00",  # the deploy role (scripts/deploy.sh, image push)
    "system_test": "AKIAREHEARSESYSTEST0",  # the system-test role (scripts/system-test.sh)
    "api": "AKIAREHEARSEAPI00000",  # the API task or function
    "worker": "AKIAREHEARSEWORKER00",  # the worker task or function
    "esm": "AKIAREHEARSEESM00000",  # Lambda's SQS poller (uses the worker function's role)
    "rehearsal": "AKIAREHEARSEITSELF00",  # the rehearsal's own inspection (not checked)
}

# Resource type -> the kind of inventory() that shows it exists (a sub-resource
# goes with its parent). destroy() fails for a type not listed here.
KIND_OF = {
    "aws_appautoscaling_policy": "scaling policy",
    "aws_appautoscaling_target": "scalable target",
    "aws_cloudwatch_dashboard": "dashboard",
    "aws_cloudwatch_log_group": "log group",
    "aws_cloudwatch_metric_alarm": "alarm",
    "aws_default_security_group": "vpc",  # the VPC's own group; Terraform only adopts it
    "aws_ecr_lifecycle_policy": "ecr repository",
    "aws_ecr_repository": "ecr repository",
    "aws_ecs_cluster": "ecs cluster",
    "aws_ecs_service": "ecs service",
    "aws_ecs_task_definition": "ecs task definition",
    "aws_flow_log": "flow log",
    "aws_iam_openid_connect_provider": "iam oidc provider",
    "aws_iam_role": "iam role",
    "aws_iam_role_policy": "iam role",
    "aws_iam_role_policy_attachment": "iam role",
    "aws_internet_gateway": "internet gateway",
    "aws_lambda_event_source_mapping": "lambda event source mapping",
    "aws_lambda_function": "lambda function",
    "aws_lambda_permission": "lambda function",
    "aws_lb": "load balancer",
    "aws_lb_listener": "load balancer",
    "aws_lb_target_group": "target group",
    "aws_lb_target_group_attachment": "target group",
    "aws_route": "route table",
    "aws_route_table": "route table",
    "aws_route_table_association": "route table",
    "aws_s3_bucket": "s3 bucket",
    "aws_s3_bucket_lifecycle_configuration": "s3 bucket",
    "aws_s3_bucket_ownership_controls": "s3 bucket",
    "aws_s3_bucket_policy": "s3 bucket",
    "aws_s3_bucket_public_access_block": "s3 bucket",
    "aws_s3_bucket_server_side_encryption_configuration": "s3 bucket",
    "aws_s3_bucket_versioning": "s3 bucket",
    "aws_security_group": "security group",
    "aws_sqs_queue": "sqs queue",
    "aws_sqs_queue_policy": "sqs queue",
    "aws_sqs_queue_redrive_allow_policy": "sqs queue",
    "aws_ssm_parameter": "ssm parameter",
    "aws_subnet": "subnet",
    "aws_vpc": "vpc",
    "aws_vpc_endpoint": "vpc endpoint",
    "aws_vpc_security_group_egress_rule": "security group",
    "aws_vpc_security_group_ingress_rule": "security group",
}

# Actions Lambda's event source mapping makes with the worker function's role.
ESM_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}

# The large email each hosting posts: over the queue's message size, so that
# it goes through the claim check, and within the front door's limit (the
# API's MAX_EMAIL_BYTES behind the ALB on Fargate; 1 MB for a Lambda target
# of the ALB, standins.ALB_LAMBDA_BODY_LIMIT).
LARGE_EMAIL_BYTES = {"fargate": 2 * 1024 * 1024, "lambda": 900 * 1024}

# Actors whose code tells a missing S3 key (404) from a refusal (403): the
# worker takes a staged email that is gone as stored. Anyone else reading a
# missing key (the system test polling for its object) treats both alike.
NOT_FOUND_MATTERS = {"worker"}


INIT_LOCK = threading.Lock()


class Failure(Exception):
    """The rehearsal found something wrong."""


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------
# What the code says it needs: the manifest (one function to adapt)
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Component:
    required: set[str]
    optional: set[str]
    actions: set[str]


@dataclasses.dataclass
class Manifest:
    components: dict[str, Component]  # api, worker, lambda-api, lambda-worker
    health_check_path: str
    default_port: int


def load_manifest(bin_dir: Path) -> Manifest:
    """What the binaries read and call, as scripts/manifest.sh merges it from
    each binary's own `manifest` (the one place that knows the format):
    {"components": {<name>: {"env": {"required": [...], "optional": [...]},
    "aws_actions": [...]}}, "health_check_path": ..., "default_port": ...}
    with the components api, worker, lambda-api and lambda-worker."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "manifest.sh"
    out = subprocess.run([str(script), str(bin_dir)], check=True, capture_output=True, timeout=60).stdout
    data = json.loads(out)
    components = {
        name: Component(set(spec["env"]["required"]), set(spec["env"].get("optional", [])),
                        set(spec["aws_actions"]))
        for name, spec in data["components"].items()
    }
    missing = {"api", "worker", "lambda-api", "lambda-worker"} - set(components)
    if missing:
        raise Failure(f"the manifest lacks the components {sorted(missing)}")
    return Manifest(components, data["health_check_path"], int(data["default_port"]))


# ---------------------------------------------------------------------------
# What the README states about the queue (checked against the created queue)
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class QueueClaims:
    visibility_timeout: dict[str, int]
    max_receive_count: int
    dlq_retention_seconds: int
    max_message_size: int


def readme_queue_claims() -> QueueClaims:
    text = (TF_DIR / "README.md").read_text()

    def find(pattern: str, what: str) -> re.Match[str]:
        m = re.search(pattern, text)
        if not m:
            raise Failure(f"terraform/README.md no longer states {what} (pattern {pattern!r}); "
                          "update the README or this check")
        return m

    fargate = int(find(r"Null computes it: (\d+) s for Fargate", "the Fargate visibility timeout").group(1))
    lam = int(find(r"\((\d+) s for the default \d+ s\)", "the Lambda visibility timeout").group(1))
    receives = int(find(r"\| `max_receive_count` \| `number` \| `(\d+)` \|", "max_receive_count").group(1))
    days = int(find(r"dead-letter queue `[^`]+` \((\d+) days", "the dead-letter queue's retention").group(1))
    size = int(find(r"`max_message_size` (\d+) on both", "the queues' max_message_size").group(1))
    return QueueClaims({"fargate": fargate, "lambda": lam}, receives, days * 86400, size)


def dockerfile_entrypoint() -> str:
    m = re.search(r'^ENTRYPOINT \["([^"]+)"\]', (REPO / "Dockerfile").read_text(), re.M)
    if not m:
        raise Failure("the Dockerfile has no exec-form ENTRYPOINT")
    return m.group(1)


def large_email_data(size: int, tag: str) -> bytes:
    """A `data` object of exactly `size` bytes of JSON text, with what must
    come back unchanged: unusual spacing, escapes, non-ASCII characters, a
    number with a trailing zero."""
    head = ('{"email_subject": "Rehearsal large email %s",  "email_sender":"rehearsal@queue2bucket.invalid",\n'
            ' "email_timestream": "%d", "extra": {"n": 1.50}, "email_content": "' % (tag, int(time.time()))).encode()
    tail = b'"}'
    unit = 'Gr\u00fc\u00dfe \u2013 \\"quoted\\" \\u00e9\\n\u2713 '.encode()
    room = size - len(head) - len(tail)
    if room < 0:
        raise ValueError(f"no email of {size} bytes")
    filler = unit * (room // len(unit))
    return head + filler + b"x" * (room - len(filler)) + tail


def variable_default(name: str) -> Any:
    """A variable's default in terraform/variables.tf."""
    with (TF_DIR / "variables.tf").open(encoding="utf-8") as f:
        for block in hcl2.load(f).get("variable", []):
            if name in block:
                return block[name].get("default", [None])[0]
    raise Failure(f"terraform/variables.tf declares no variable {name}")


# ELF e_machine (bytes 18-19, little-endian) -> the architecture, as Lambda and the variable name it.
ELF_MACHINES = {b"\xb7\x00": "arm64", b"\x3e\x00": "x86_64"}


def elf_architecture(path: Path) -> str:
    """The architecture an executable is built for, from its ELF header."""
    with open(path, "rb") as f:
        header = f.read(20)
    if header[:4] != b"\x7fELF" or header[18:20] not in ELF_MACHINES:
        raise Failure(f"{path} is not an arm64 or x86_64 ELF executable")
    return ELF_MACHINES[header[18:20]]


def stored_key(prefix: str, layout: str, email_id: str) -> str:
    """Where the worker stores an email (the README, What is stored): the
    seconds come from the UUIDv7 id; the hashed layout puts the first byte of
    the SHA-256 of the id, as two hex digits, before the name."""
    name = f"{int(email_id.replace('-', '')[:12], 16) // 1000}-{email_id}.json"
    if layout == "hashed":
        return f"{prefix}{hashlib.sha256(email_id.encode()).hexdigest()[:2]}/{name}"
    if layout == "time":
        return f"{prefix}{name}"
    raise Failure(f"unknown key layout {layout!r}")


# ---------------------------------------------------------------------------
# One hosting, start to end
# ---------------------------------------------------------------------------


class Rehearsal:
    def __init__(self, hosting: str, bin_dir: Path, workdir: Path, manifest: Manifest, claims: QueueClaims,
                 sha: str, out: Callable[[str], None]) -> None:
        self.hosting = hosting
        self.bin_dir = bin_dir
        self.dir = workdir / hosting
        self.dir.mkdir(parents=True)
        self.manifest = manifest
        self.claims = claims
        self.sha = sha
        self._out = out
        self.tfvars = json.loads(TFVARS.read_text())
        self.name = self.tfvars.get("name", "queue2bucket")
        self.region = self.tfvars.get("region", "us-east-2")
        # What production applies, and what this hosting rehearses (see the top of this file).
        production = {v: self.tfvars.get(v, variable_default(v)) for v in ("architecture", "s3_key_layout")}
        self.architecture, self.key_layout = production["architecture"], production["s3_key_layout"]
        if hosting == "lambda":
            self.architecture = elf_architecture(bin_dir / "queue2bucket-api")
            self.key_layout = "hashed" if production["s3_key_layout"] == "time" else "time"
        self.overrides = {v: value for v, value in (("architecture", self.architecture),
                                                    ("s3_key_layout", self.key_layout)) if value != production[v]}
        self.zip_dir = self.dir / "target" / "lambda" / self.architecture
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.closers: list[Callable[[], None]] = []
        self.moto: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.request_log = self.dir / "requests.jsonl"
        self.timings: list[tuple[str, float]] = []
        self.problems: list[str] = []
        self.outputs: dict[str, Any] = {}

    # --- reporting ---------------------------------------------------------------

    def say(self, message: str) -> None:
        self._out(f"[{self.hosting}] {message}")

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.problems.append(message)
            self.say(f"  FAIL {message}")
        return ok

    def expect_no_problems(self, phase: str) -> None:
        if self.problems:
            raise Failure(f"{phase}: {len(self.problems)} problem(s):\n  - " + "\n  - ".join(self.problems))

    @contextlib.contextmanager
    def phase(self, key: str, title: str) -> Iterator[None]:
        self.say(f"== {title}")
        started = time.monotonic()
        try:
            yield
            self.expect_no_problems(title)
        finally:
            self.timings.append((key, time.monotonic() - started))
        self.say(f"   {key}: ok ({self.timings[-1][1]:.0f} s)")

    # --- AWS clients -------------------------------------------------------------

    def client(self, service: str, actor: str = "rehearsal") -> Any:
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=KEYS[actor], aws_secret_access_key="rehearsal",
            config=BotoConfig(retries={"max_attempts": 2}, s3={"addressing_style": "path"}))

    def aws_env(self, actor: str) -> dict[str, str]:
        """The emulator and one actor's credentials: all a binary gets beyond what Terraform declared."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": KEYS[actor],
            "AWS_SECRET_ACCESS_KEY": "rehearsal",
        }

    def tool_env(self, actor: str, **extra: str) -> dict[str, str]:
        """For Terraform and the scripts: the caller's environment without its AWS settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.aws_env(actor))
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        env.update({"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
                    "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
        env.update(extra)
        return env

    # --- moto --------------------------------------------------------------------

    def start_moto(self) -> None:
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        env.update({"MOTO_IAM_LOAD_MANAGED_POLICIES": "true", "REHEARSAL_REQUEST_LOG": str(self.request_log)})
        log = open(self.dir / "moto.log", "wb")  # noqa: SIM115 - closed with the process
        self.moto = subprocess.Popen([sys.executable, str(HERE / "moto_server.py"), "-H", "127.0.0.1",
                                      "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_until("moto answering", lambda: self._moto_up(), 60)
        self.baseline = self.inventory()

    def _moto_up(self) -> bool:
        if self.moto and self.moto.poll() is not None:
            raise Failure(f"moto exited with {self.moto.returncode}:\n{tail(self.dir / 'moto.log')}")
        try:
            return http_get(f"{self.endpoint}/moto-api/", 1)[0] == 200
        except OSError:
            return False

    def inventory(self) -> dict[str, set[str]]:
        """Everything of the kinds the configuration creates that exists in the emulator."""
        c = self.client
        ecs, ec2, elb, iam, lam = c("ecs"), c("ec2"), c("elbv2"), c("iam"), c("lambda")
        clusters = ecs.list_clusters()["clusterArns"]
        active_clusters = [x["clusterArn"] for x in ecs.describe_clusters(clusters=clusters)["clusters"]
                           if x["status"] == "ACTIVE"] if clusters else []
        aas = c("application-autoscaling")
        return {
            "sqs queue": set(c("sqs").list_queues().get("QueueUrls", [])),
            "s3 bucket": {b["Name"] for b in c("s3").list_buckets()["Buckets"]},
            "ssm parameter": {p["Name"] for p in c("ssm").describe_parameters()["Parameters"]},
            "ecr repository": {r["repositoryName"] for r in c("ecr").describe_repositories()["repositories"]},
            "ecs cluster": set(active_clusters),
            "ecs service": {a for cl in active_clusters for a in ecs.list_services(cluster=cl)["serviceArns"]},
            "ecs task definition": set(ecs.list_task_definitions(status="ACTIVE")["taskDefinitionArns"]),
            "lambda function": {f["FunctionName"] for f in lam.list_functions()["Functions"]},
            "lambda event source mapping": {m["UUID"] for m in lam.list_event_source_mappings()["EventSourceMappings"]},
            "iam role": {r["RoleName"] for r in iam.list_roles()["Roles"]},
            "iam oidc provider": {p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]},
            "load balancer": {x["LoadBalancerArn"] for x in elb.describe_load_balancers()["LoadBalancers"]},
            "target group": {x["TargetGroupArn"] for x in elb.describe_target_groups()["TargetGroups"]},
            "vpc": {x["VpcId"] for x in ec2.describe_vpcs()["Vpcs"]},
            "subnet": {x["SubnetId"] for x in ec2.describe_subnets()["Subnets"]},
            "security group": {x["GroupId"] for x in ec2.describe_security_groups()["SecurityGroups"]},
            "internet gateway": {x["InternetGatewayId"] for x in ec2.describe_internet_gateways()["InternetGateways"]},
            "route table": {x["RouteTableId"] for x in ec2.describe_route_tables()["RouteTables"]},
            "vpc endpoint": {x["VpcEndpointId"] for x in ec2.describe_vpc_endpoints()["VpcEndpoints"]},
            "flow log": {x["FlowLogId"] for x in ec2.describe_flow_logs()["FlowLogs"]},
            "log group": {x["logGroupName"] for x in c("logs").describe_log_groups()["logGroups"]},
            "alarm": {x["AlarmName"] for x in c("cloudwatch").describe_alarms()["MetricAlarms"]},
            "dashboard": {x["DashboardName"] for x in c("cloudwatch").list_dashboards()["DashboardEntries"]},
            "scalable target": {x["ResourceId"] for x in aas.describe_scalable_targets(ServiceNamespace="ecs")
                                ["ScalableTargets"]},
            "scaling policy": {x["PolicyName"] for x in aas.describe_scaling_policies(ServiceNamespace="ecs")
                               ["ScalingPolicies"]},
        }

    def requests(self) -> list[tuple[dict[str, Any], iam_policy.Call]]:
        with open(self.request_log, encoding="utf-8") as f:
            return iam_policy.calls_from_log(f, ACCOUNT)

    # --- terraform ---------------------------------------------------------------

    def prepare_terraform(self, plugin_dir: Path | None, plugin_cache: Path) -> None:
        self.tf = self.dir / "terraform"
        self.tf.mkdir()
        for f in TF_DIR.glob("*.tf"):
            shutil.copy(f, self.tf)
        shutil.copy(TFVARS, self.tf)
        for f in HERE.glob("*.tf"):
            shutil.copy(f, self.tf)
        args = ["init", "-input=false", "-no-color"]
        if plugin_dir:
            args.append(f"-plugin-dir={plugin_dir}")
        self.tf_env = self.tool_env("terraform", CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_INPUT="0",
                                    TF_PLUGIN_CACHE_DIR=str(plugin_cache))
        self.tf_env.pop("TF_CLI_ARGS", None)
        cli_config = self.tf_env.get("TF_CLI_CONFIG_FILE")
        if cli_config and not Path(cli_config).exists():
            self.tf_env.pop("TF_CLI_CONFIG_FILE")  # would only print a warning on every run
        # One init at a time: without a provider mirror both hostings share the plugin cache,
        # which Terraform does not lock.
        with INIT_LOCK:
            self.terraform(args, "init", timeout=600)

    def tf_vars(self, **overrides: str) -> list[str]:
        """production.tfvars.json, the emulator, the hosting and this hosting's overrides. No zip paths:
        the functions' zips are the defaults', ../target/lambda/<architecture>/, relative to the copy."""
        args = ["-var-file=production.tfvars.json", f"-var=rehearsal_endpoint={self.endpoint}",
                f"-var=hosting={self.hosting}"]
        return args + [f"-var={k}={v}" for k, v in {**self.overrides, **overrides}.items()]

    def terraform(self, args: list[str], label: str, *, timeout: float, actor: str = "terraform",
                  ok_codes: tuple[int, ...] = (0,), extra_env: dict[str, str] | None = None) -> int:
        env = dict(self.tf_env)
        env["AWS_ACCESS_KEY_ID"] = KEYS[actor]
        env.update(extra_env or {})
        log = self.dir / f"terraform-{label}.log"
        with open(log, "wb") as f:
            try:
                code = subprocess.run(["terraform", f"-chdir={self.tf}", *args], stdout=f, stderr=subprocess.STDOUT,
                                      env=env, timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                raise Failure(f"terraform {label} did not finish within {timeout:.0f} s:\n{tail(log)}") from None
        if code not in ok_codes:
            raise Failure(f"terraform {label} exited with {code}:\n{tail(log, 40)}")
        return code

    def build_zips(self) -> None:
        """The functions' zips, from the binaries under test, where scripts/lambda-arm64.sh puts those of
        their architecture (Terraform uploads them at creation), and only there."""
        self.zips = {}
        for part in ("api", "worker"):
            path = self.zip_dir / f"queue2bucket-{part}" / "bootstrap.zip"
            path.parent.mkdir(parents=True)
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
                info = zipfile.ZipInfo("bootstrap")
                info.external_attr = 0o755 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, (self.bin_dir / f"queue2bucket-{part}").read_bytes())
            self.zips[part] = path

    # --- the run -------------------------------------------------------------------

    def run(self, plugin_dir: Path | None, plugin_cache: Path) -> None:
        try:
            with self.phase("apply", "apply terraform/ to an empty emulator"):
                self.start_moto()
                self.say(f"   moto at {self.endpoint}; work directory {self.dir}")
                self.say(f"   architecture {self.architecture}, key layout {self.key_layout}"
                         + (f" (overriding production.tfvars.json: {self.overrides})" if self.overrides else
                            " (production.tfvars.json)"))
                if self.hosting == "lambda":
                    self.build_zips()
                self.prepare_terraform(plugin_dir, plugin_cache)
                self.terraform(["apply", "-auto-approve", "-no-color", *self.tf_vars()], "apply", timeout=600)
                self.outputs = {k: v["value"] for k, v in json.loads(subprocess.run(
                    ["terraform", f"-chdir={self.tf}", "output", "-json"], env=self.tf_env, check=True,
                    capture_output=True).stdout).items()}
                self.check_token_not_in_state()
                self.check_created_architecture()
            with self.phase("deploy", "deploy with scripts/deploy.sh"):
                self.deploy()
            with self.phase("drift", "no drift: the pull-request plan and the apply job's plan show no change"):
                self.check_no_drift()
            with self.phase("run", "run the binaries from what Terraform created"):
                self.start_product()
            with self.phase("test", "system test (scripts/system-test.sh), a large email, a poison message"):
                self.system_test()
                self.large_email()
                self.poison_message()
            with self.phase("check", "check the created resources against what the code needs"):
                self.check_environment()
                self.check_architecture()
                self.check_queue()
                self.check_bucket()
                self.check_iam()
                self.check_github_roles()
                self.check_observed_calls()
            with self.phase("destroy", "destroy, then nothing left"):
                self.stop_product()
                self.destroy()
        finally:
            self.stop_product()
            if self.moto:
                self.moto.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.moto.wait(10)

    # --- 1. the state holds no token --------------------------------------------

    def token(self) -> str:
        return self.client("ssm").get_parameter(Name=self.outputs["token_parameter_name"],
                                                WithDecryption=True)["Parameter"]["Value"]

    def check_token_not_in_state(self) -> None:
        token = self.token()
        self.check(len(token) >= 16, f"the token Terraform wrote is {len(token)} characters long")
        state = (self.tf / "terraform.tfstate").read_text()
        self.check(token not in state, "the API token is in the Terraform state")
        resources = json.loads(state)["resources"]
        param = next((r for r in resources if r["type"] == "aws_ssm_parameter" and r["name"] == "token"), None)
        if self.check(param is not None, "aws_ssm_parameter.token is not in the state"):
            attrs = param["instances"][0]["attributes"]
            self.check(not attrs.get("value") and attrs.get("has_value_wo") is True,
                       "aws_ssm_parameter.token keeps a value in the state (expected value_wo only)")

    # --- 2. deploy ---------------------------------------------------------------

    def run_script(self, script: str, args: list[str], actor: str, label: str, timeout: float,
                   expect_failure: bool = False, **env: str) -> str:
        """Runs one of scripts/ as `actor`; returns its output. Fails unless it exits 0 (non-zero with
        expect_failure)."""
        log = self.dir / f"{label}.log"
        with open(log, "wb") as f:
            try:
                code = subprocess.run([str(REPO / "scripts" / script), *args], stdout=f, stderr=subprocess.STDOUT,
                                      env=self.tool_env(actor, NAME=self.name, **env), timeout=timeout,
                                      cwd=self.dir).returncode
            except subprocess.TimeoutExpired:
                raise Failure(f"scripts/{script} did not finish within {timeout:.0f} s:\n{tail(log)}") from None
        output = log.read_text(errors="replace")
        for line in output.splitlines():
            self.say(f"   | {line}")
        if expect_failure and code != 0:
            self.say(f"   scripts/{script} refused, as it should (exit code {code})")
        if expect_failure and code == 0:
            raise Failure(f"scripts/{script} {' '.join(args)} succeeded, but should have failed")
        if code != 0 and not expect_failure:
            raise Failure(f"scripts/{script} {' '.join(args)} exited with {code}")
        return output

    def deploy(self) -> None:
        if self.hosting == "fargate":
            # What the release workflow's push job does (docker push) before it deploys.
            manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                   "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                              "size": 2, "digest": "sha256:" + "0" * 64}, "layers": []})
            self.client("ecr", "deploy").put_image(repositoryName=self.name, imageManifest=manifest,
                                                   imageTag=self.sha)
            self.run_script("deploy.sh", ["ecs", self.sha], "deploy", "deploy", 180,
                            DEPLOY_POLL_SECONDS="1", DEPLOY_TIMEOUT_SECONDS="60")
        else:
            # The deploy workflow passes the architecture production.tfvars.json names: zips of another
            # one are refused before any function changes.
            other = "arm64" if self.architecture == "x86_64" else "x86_64"
            def updates() -> int:
                return sum(1 for _, c in self.requests() if c.action == "lambda:UpdateFunctionCode")

            before = updates()
            output = self.run_script("deploy.sh", ["lambda", str(self.zip_dir)], "deploy", "deploy-refused", 60,
                                     expect_failure=True, ARCHITECTURE=other)
            self.check(f"is built for {self.architecture}, but the functions run on {other}" in output,
                       f"scripts/deploy.sh lambda refused {self.architecture} zips for {other} functions without "
                       "saying why")
            self.check(updates() == before, "scripts/deploy.sh lambda changed a function before refusing the zips")
            self.run_script("deploy.sh", ["lambda", str(self.zip_dir)], "deploy", "deploy", 180,
                            ARCHITECTURE=self.architecture)

    # --- 3. drift ------------------------------------------------------------------

    def check_no_drift(self) -> None:
        """The Terraform workflow's plan step (scripts/terraform-plan.sh), as each of its jobs runs it."""
        rehearsal_vars = self.tf_vars()[1:]  # the script adds -var-file=production.tfvars.json itself
        for label, actor, args in (("plan-pull-request", "plan", ["-refresh=false", "-lock=false"]),
                                   ("plan-apply-job", "terraform", [])):
            outputs = self.workflow_plan(label, actor, [*args, *rehearsal_vars])
            self.check(outputs.get("exitcode") == "0",
                       f"{label}: after a deploy the plan shows changes ({outputs.get('summary')}): "
                       + self.plan_summary(label))
            self.check(outputs.get("templates_changed") == "false",
                       f"{label}: after a deploy the plan would register a new task definition template")
        self.check_lambda_zip_precondition()

    def check_lambda_zip_precondition(self) -> None:
        """Creating a function needs the zip of its architecture, and the plan says so before changing
        anything; a plan of functions that exist needs none (the deploy workflow owns their code), not
        even when the architecture changes (the deploy brings it, with the code)."""
        if self.hosting == "fargate":
            # No zips in this hosting's directory: the defaults name ../target/lambda/<architecture>/.
            label = "plan-switch-to-lambda-without-zips"
            code = self.terraform(["plan", "-no-color", *self.tf_vars(hosting="lambda")], label, timeout=300,
                                  ok_codes=(0, 1, 2))
            text = (self.dir / f"terraform-{label}.log").read_text(errors="replace")
            wanted = f"target/lambda/{self.architecture}/queue2bucket-"
            self.check(code == 1 and "needs its zip" in text and wanted in text,
                       f"{label}: a switch to Lambda without the zips should fail at plan time with the "
                       f"precondition's message naming {wanted}... (exit code {code}):\n"
                       f"{tail(self.dir / f'terraform-{label}.log', 15)}")
            self.say(f"   a plan switching to Lambda without the zips fails at plan time, naming {wanted}...")
        else:
            # The other architecture, whose zips were never built.
            other = "arm64" if self.architecture == "x86_64" else "x86_64"
            label = "plan-existing-functions-other-architecture"
            code = self.terraform(["plan", "-no-color", *self.tf_vars(architecture=other), "-refresh=false",
                                   "-detailed-exitcode"], label, timeout=300, ok_codes=(0, 1, 2))
            changes = re.findall(r"^  # (\S+) (?:will be|must be) ", (self.dir / f"terraform-{label}.log")
                                 .read_text(errors="replace"), re.M)
            self.check(code in (0, 2) and not changes,
                       f"{label}: a plan of the existing functions with architecture = {other} (no zips of it) "
                       f"should change no resource (the deploy sets the architecture), but exited with {code} "
                       f"changing {changes}:\n{tail(self.dir / f'terraform-{label}.log', 15)}")
            self.say(f"   a plan of the existing functions needs no zip, and architecture = {other} changes none "
                     "of them (the deploy brings it)")

    def workflow_plan(self, label: str, actor: str, args: list[str]) -> dict[str, str]:
        github_output = self.dir / f"{label}.github-output"
        env = dict(self.tf_env, AWS_ACCESS_KEY_ID=KEYS[actor], GITHUB_OUTPUT=str(github_output))
        log = self.dir / f"terraform-{label}.log"
        with open(log, "wb") as f:
            try:
                code = subprocess.run([str(REPO / "scripts" / "terraform-plan.sh"), *args], cwd=self.tf, env=env,
                                      stdout=f, stderr=subprocess.STDOUT, timeout=300).returncode
            except subprocess.TimeoutExpired:
                raise Failure(f"scripts/terraform-plan.sh ({label}) did not finish within 300 s") from None
        if code != 0:
            raise Failure(f"scripts/terraform-plan.sh ({label}) exited with {code}:\n{tail(log, 40)}")
        outputs, lines = {}, github_output.read_text().splitlines()
        while lines:
            line = lines.pop(0)
            key, _, value = line.partition("=")
            if "<<" in key:  # key<<DELIMITER ... DELIMITER
                key, delimiter = key.split("<<", 1)
                body = []
                while lines and lines[0] != delimiter:
                    body.append(lines.pop(0))
                lines = lines[1:]
                value = "\n".join(body)
            outputs[key] = value
        self.say(f"   {label}: {outputs.get('summary')} (scripts/terraform-plan.sh, {actor} role)")
        return outputs

    def plan_summary(self, label: str) -> str:
        text = (self.dir / f"terraform-{label}.log").read_text(errors="replace")
        changes = re.findall(r"^  # (\S+) (will be|must be) ([^\n]+)", text, re.M)
        return "; ".join(f"{a} {b} {c}" for a, b, c in changes) or tail(self.dir / f"terraform-{label}.log", 10)

    # --- 4. the product ---------------------------------------------------------------

    def start_process(self, label: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.dir / f"{label}.log"
        f = open(log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=self.dir)
        self.procs.append((label, proc, log))
        return proc

    def assert_running(self) -> None:
        for label, proc, log in self.procs:
            if proc.poll() is not None:
                raise Failure(f"{label} exited with {proc.returncode}:\n{tail(log)}")

    def start_product(self) -> None:
        self.sqs = self.client("sqs")
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.outputs["queue_url"],
                                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.outputs["dlq_url"],
                                                     AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.env_declared: dict[str, dict[str, str]] = {}
        self.roles: dict[str, str] = {}
        if self.hosting == "fargate":
            self.start_tasks()
        else:
            self.start_functions()
        self.start_load_balancer()
        self.assert_running()

    def start_tasks(self) -> None:
        ecs = self.client("ecs")
        repo_uri = self.outputs["ecr_repository_url"]
        entrypoint = dockerfile_entrypoint()
        self.tasks: dict[str, dict[str, Any]] = {}
        for part in ("api", "worker"):
            service = ecs.describe_services(cluster=self.outputs["cluster_name"],
                                            services=[self.outputs[f"{part}_service_name"]])["services"][0]
            td = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
            self.check(td["family"] == self.outputs[f"{part}_task_definition_family"],
                       f"{part}: the service runs family {td['family']}")
            containers = td["containerDefinitions"]
            if not self.check(len(containers) == 1 and containers[0]["name"] == part,
                              f"{part}: the task definition should hold one container named {part}"):
                continue
            c = containers[0]
            self.check(c["image"] == f"{repo_uri}:{self.sha}",
                       f"{part}: the service runs image {c['image']}, not the deployed {repo_uri}:{self.sha}")
            self.check("entryPoint" not in c, f"{part}: the container overrides the image's entry point")
            self.check(not c.get("secrets") and not c.get("environmentFiles"),
                       f"{part}: secrets or environment files cannot be modelled by the rehearsal")
            env = {e["name"]: e["value"] for e in c.get("environment", [])}
            self.env_declared[part] = env
            self.roles[part] = td["taskRoleArn"]
            self.tasks[part] = {"container": c, "definition": td, "service": service}
            argv = [str(self.bin_dir / Path(entrypoint).name), *c.get("command", [])]
            proc_env = dict(env)
            proc_env.update(self.aws_env(part))
            if part == "api":
                # Every task has its own network namespace, where the container port is free; on one
                # machine the rehearsal gives the API another free port (the target is that port).
                self.api_port = free_port()
                proc_env["PORT"] = str(self.api_port)
            self.say(f"   {part}: {' '.join(argv[1:])} with {', '.join(sorted(env))} (from {td['family']}:"
                     f"{td['revision']})")
            self.start_process(part, argv, proc_env)
            self.tasks[part]["env"] = proc_env
        self.expect_no_problems("start the tasks")
        wait_until("the API ready (GET /ready: token read from SSM)",
                   lambda: self.assert_running() or self._ready(), 30)
        # The container's own health check, as ECS runs it inside the task.
        health = self.tasks["api"]["container"].get("healthCheck", {}).get("command", [])
        if self.check(health[:1] == ["CMD"] and health[1:2] == [entrypoint],
                      f"api: the container health check {health} does not run the image's binary"):
            code = subprocess.run([str(self.bin_dir / Path(entrypoint).name), *health[2:]],
                                  env=self.tasks["api"]["env"], timeout=30, capture_output=True).returncode
            self.check(code == 0, f"api: the container health check {health[1:]} exited with {code}")

    def _ready(self) -> bool:
        try:
            return http_get(f"http://127.0.0.1:{self.api_port}/ready", 2)[0] == 200
        except OSError:
            return False

    def start_functions(self) -> None:
        lam = self.client("lambda")
        self.runtimes: dict[str, standins.LambdaRuntime] = {}
        for part in ("api", "worker"):
            name = self.outputs[f"lambda_{part}_function_name"]
            cfg = lam.get_function_configuration(FunctionName=name)
            self.check(cfg["Runtime"] == "provided.al2023" and cfg["Handler"] == "bootstrap",
                       f"{name}: runtime {cfg['Runtime']} and handler {cfg['Handler']}, expected provided.al2023"
                       " and bootstrap (the zip's executable)")
            env = dict((cfg.get("Environment") or {}).get("Variables") or {})
            self.env_declared[f"lambda-{part}"] = env
            self.roles[f"lambda-{part}"] = cfg["Role"]
            runtime = standins.LambdaRuntime(cfg["FunctionArn"], int(cfg["Timeout"]))
            self.closers.append(runtime.close)
            self.runtimes[part] = runtime
            proc_env = dict(env)
            proc_env.update({
                # What Lambda sets for a custom runtime.
                "AWS_LAMBDA_RUNTIME_API": runtime.address,
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg["MemorySize"]),
                "AWS_LAMBDA_LOG_GROUP_NAME": (cfg.get("LoggingConfig") or {}).get("LogGroup", f"/aws/lambda/{name}"),
                "AWS_LAMBDA_LOG_STREAM_NAME": f"rehearsal/[$LATEST]{uuid.uuid4().hex}",
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "_HANDLER": cfg["Handler"],
                "LAMBDA_TASK_ROOT": str(self.dir),
                "TZ": ":UTC",
            })
            # The function role's session credentials, and the emulator.
            proc_env.update(self.aws_env(part))
            self.say(f"   {name}: bootstrap (queue2bucket-{part}) with {', '.join(sorted(env))}")
            self.start_process(f"lambda-{part}", [str(self.bin_dir / f"queue2bucket-{part}")], proc_env)
            wait_until(f"{name} asking for its first invocation",
                       lambda r=runtime: self.assert_running() or r.init_error or r.ready.is_set(), 30)
            self.check(runtime.init_error is None, f"{name}: init failed: {runtime.init_error}")
        self.expect_no_problems("start the functions")

        worker = self.outputs["lambda_worker_function_name"]
        worker_arn = lam.get_function_configuration(FunctionName=worker)["FunctionArn"]
        mappings = lam.list_event_source_mappings()["EventSourceMappings"]
        if not self.check(len(mappings) == 1, f"{len(mappings)} event source mappings, expected 1 (queue -> {worker})"):
            return
        m = mappings[0]
        self.check(m["EventSourceArn"] == self.queue_arn and m["FunctionArn"] == worker_arn,
                   f"the event source mapping feeds {m['FunctionArn']} from {m['EventSourceArn']}, expected "
                   f"{worker_arn} from {self.queue_arn}")
        self.check(m.get("State") in ("Enabled", "Enabling", "Creating"), f"{worker}: the mapping is {m.get('State')}")
        report = "ReportBatchItemFailures" in (m.get("FunctionResponseTypes") or [])
        self.check(report, f"{worker}: the mapping does not use ReportBatchItemFailures (the function reports "
                           "partial batch failures)")
        self.esm = standins.EventSourceMapping(
            self.client("sqs", "esm"), self.outputs["queue_url"], self.queue_arn, self.region,
            int(m["BatchSize"]), report, self.runtimes["worker"], self.say)
        self.closers.append(self.esm.stop)

    def start_load_balancer(self) -> None:
        elb = self.client("elbv2")
        lbs = [lb for lb in elb.describe_load_balancers()["LoadBalancers"]
               if lb["DNSName"] == self.outputs["alb_dns_name"]]
        if not self.check(len(lbs) == 1, f"no load balancer named {self.outputs['alb_dns_name']}"):
            self.expect_no_problems("load balancer")
        lb = lbs[0]
        self.check(self.outputs["api_url"] == f"http://{lb['DNSName']}",
                   f"api_url {self.outputs['api_url']} is not http:// and the load balancer's name (no certificate)")
        listeners = [li for li in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
                     if li["Port"] == 80]
        if not self.check(len(listeners) == 1 and listeners[0]["Protocol"] == "HTTP",
                          "the load balancer has no HTTP listener on port 80"):
            self.expect_no_problems("load balancer")
        actions = listeners[0]["DefaultActions"]
        if not self.check(len(actions) == 1 and actions[0]["Type"] == "forward",
                          f"the port-80 listener does not forward: {actions}"):
            self.expect_no_problems("load balancer")
        tg = elb.describe_target_groups(TargetGroupArns=[actions[0]["TargetGroupArn"]])["TargetGroups"][0]
        self.target_group = tg
        if self.hosting == "fargate":
            port = self.tasks["api"]["container"]["portMappings"][0]["containerPort"]
            declared_port = self.env_declared["api"].get("PORT")
            self.check(tg["TargetType"] == "ip", f"target group type {tg['TargetType']}, expected ip")
            self.check(tg["Port"] == port == int(declared_port or self.manifest.default_port),
                       f"target group port {tg['Port']}, container port {port}, PORT {declared_port}: must agree")
            bindings = self.tasks["api"]["service"].get("loadBalancers", [])
            self.check(bindings == [{"targetGroupArn": tg["TargetGroupArn"], "containerName": "api",
                                     "containerPort": port}],
                       f"the API service registers {bindings} with the target group, expected its api container "
                       f"on {port}")
            forward = standins.forward_to_ip("127.0.0.1", self.api_port)
        else:
            self.check(tg["TargetType"] == "lambda", f"target group type {tg['TargetType']}, expected lambda")
            fn_arn = self.client("lambda").get_function_configuration(
                FunctionName=self.outputs["lambda_api_function_name"])["FunctionArn"]
            targets = [t["Target"]["Id"] for t in
                       elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])["TargetHealthDescriptions"]]
            self.check(targets == [fn_arn], f"the target group's targets are {targets}, expected [{fn_arn}]")
            policy = json.loads(self.client("lambda").get_policy(FunctionName=fn_arn)["Policy"])
            grants = [s for s in policy["Statement"] if s.get("Principal", {}).get("Service") ==
                      "elasticloadbalancing.amazonaws.com" and s.get("Action") == "lambda:InvokeFunction"]
            self.check(any(s.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn") == tg["TargetGroupArn"]
                           for s in grants),
                       f"the API function does not let this target group invoke it: {policy['Statement']}")
            forward = standins.forward_to_lambda(self.runtimes["api"], tg["TargetGroupArn"], 80)
        self.alb = standins.LoadBalancer(lb["DNSName"], 80, tg["TargetGroupArn"], tg["TargetType"], forward)
        self.closers.append(self.alb.close)
        self.expect_no_problems("load balancer")
        # The target group's health check, as the load balancer sends it to the target.
        path = tg.get("HealthCheckPath")
        self.check(path == self.manifest.health_check_path,
                   f"the target group health-checks {path}, the API answers health checks on "
                   f"{self.manifest.health_check_path}")
        matcher = (tg.get("Matcher") or {}).get("HttpCode")
        status, _, body = forward("GET", path or "/", {"host": lb["DNSName"], "user-agent": "ELB-HealthChecker/2.0"},
                                  b"")
        self.check(matcher == "200" and status == 200,
                   f"health check GET {path}: {status} {body[:200]!r} (the target group expects {matcher})")
        self.say(f"   load balancer {lb['DNSName']}:80 -> {tg['TargetType']} target; health check GET {path}: "
                 f"{status}")

    def stop_product(self) -> None:
        for label, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for label, proc, log in self.procs:
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                self.check(False, f"{label} did not stop within 40 s of SIGTERM")
        self.procs = []
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                close()
        self.closers = []

    # --- 5. the system test ----------------------------------------------------------

    def system_test(self) -> None:
        self.run_script("system-test.sh", [], "system_test", "system-test", 240,
                        HOSTING=self.hosting, API_URL=self.outputs["api_url"],
                        CURL_CONNECT_TO=f"{self.alb.dns_name}:80:127.0.0.1:{self.alb.port}",
                        HEALTH_TIMEOUT_SECONDS="30", DELIVERY_TIMEOUT_SECONDS="60")
        self.assert_running()
        # The settings the system test found in the deployment are the Terraform outputs.
        api_env = self.env_declared["api" if self.hosting == "fargate" else "lambda-api"]
        worker_env = self.env_declared["worker" if self.hosting == "fargate" else "lambda-worker"]
        expected = {"SQS_QUEUE_URL": self.outputs["queue_url"],
                    "TOKEN_PARAM_NAME": self.outputs["token_parameter_name"]}
        for k, v in expected.items():
            self.check(api_env.get(k) == v, f"the API's {k} is {api_env.get(k)}, the output says {v}")
        expected = {"S3_BUCKET_NAME": self.outputs["bucket_name"], "S3_KEY_PREFIX": self.outputs["s3_key_prefix"],
                    "S3_KEY_LAYOUT": self.outputs["s3_key_layout"]}
        if self.hosting == "fargate":
            expected["SQS_QUEUE_URL"] = self.outputs["queue_url"]
        for k, v in expected.items():
            self.check(worker_env.get(k) == v, f"the worker's {k} is {worker_env.get(k)}, the output says {v}")

    def large_email(self) -> None:
        """An email too large for a queue message, through the deployed system:
        the API stages it below the staging prefix and queues a pointer, the
        worker stores it byte for byte under its key and removes the staged
        copy. Then the pointer is delivered again, as SQS may: the worker
        finds the staged copy gone (a 404, which its role's s3:ListBucket on
        the staging prefix makes possible), finds the email's key by listing
        it (s3:ListBucket on the key prefix), counts the email as stored and
        acknowledges it; no second object appears."""
        size = LARGE_EMAIL_BYTES[self.hosting]
        limit = int(self.queue_attribute("MaximumMessageSize"))
        if not self.check(size > limit, f"the large email ({size} bytes) fits a queue message ({limit} bytes): it "
                                        "would not go through the claim check"):
            return
        data = large_email_data(size, f"{self.hosting} {uuid.uuid4()}")
        body = b'{"data":' + data + b',"token":' + json.dumps(self.token()).encode() + b"}"
        status, answer = self.post_email(body)
        if not self.check(status == 200, f"POST /email of a {len(body)}-byte request: {status} {answer[:300]!r}"):
            return
        email_id = json.loads(answer)["id"]
        bucket, key_prefix = self.outputs["bucket_name"], self.outputs["s3_key_prefix"]
        staging = self.outputs["s3_staging_prefix"]
        staged_key = f"{staging}{email_id}.json"
        key = stored_key(key_prefix, self.key_layout, email_id)
        s3 = self.client("s3")

        def stored() -> bytes | None:
            self.assert_running()
            with contextlib.suppress(s3.exceptions.NoSuchKey):
                return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return None

        started = time.monotonic()
        got = wait_until(f"s3://{bucket}/{key} (a {size}-byte email)", stored, 60, interval=0.5)
        self.check(got == data, f"s3://{bucket}/{key} holds {len(got)} bytes that differ from the {size} posted")
        staged_by_api = [c for entry, c in self.requests() if c.key == KEYS["api"] and c.action == "s3:PutObject"
                         and c.resource == f"arn:aws:s3:::{bucket}/{staged_key}"]
        self.check(bool(staged_by_api), f"the API never wrote {staged_key}: the email did not go through the claim "
                                        "check")
        wait_until(f"nothing left below {staging}", lambda: not self.keys_below(staging), 30, interval=0.5)
        self.say(f"   a {size}-byte email (queue messages take {limit}): staged as {staged_key}, stored as {key} "
                 f"byte for byte after {time.monotonic() - started:.0f} s, nothing left below {staging}")

        # The same pointer again: what a redelivery after the clean-up looks like.
        pointer = json.dumps({"staged": staged_key, "bytes": size})
        self.sqs.send_message(QueueUrl=self.outputs["queue_url"], MessageBody=pointer, MessageAttributes={
            "q2b-id": {"DataType": "String", "StringValue": email_id},
            "q2b-claim": {"DataType": "Number", "StringValue": str(size)}})

        def acknowledged() -> bool:
            self.assert_running()
            attrs = self.queue_attribute("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
            return all(v == "0" for v in attrs.values())

        wait_until("the repeated pointer acknowledged (the queue empty)", acknowledged, 60, interval=0.5)
        missing = [entry for entry, c in self.requests() if c.key == KEYS["worker"] and c.action == "s3:GetObject"
                   and c.resource == f"arn:aws:s3:::{bucket}/{staged_key}" and entry.get("status") == 404]
        self.check(bool(missing), f"the worker did not read the removed {staged_key} again for the repeated pointer")
        copies = [k for k in self.keys_below(key_prefix) if email_id in k]
        self.check(copies == [key], f"after the repeated pointer the bucket holds {copies} for {email_id}")
        self.check(stored() == data, f"s3://{bucket}/{key} changed after the repeated pointer")
        self.large_key = key
        self.say(f"   the same pointer again: the worker found {staged_key} gone (404), acknowledged it as stored; "
                 "still one object")

    def post_email(self, body: bytes) -> tuple[int, bytes]:
        """POST /email through the load balancer's stand-in, as a client would."""
        conn = http.client.HTTPConnection("127.0.0.1", self.alb.port, timeout=60)
        try:
            conn.request("POST", "/email", body=body, headers={"host": self.alb.dns_name,
                                                                "content-type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def queue_attribute(self, *names: str) -> Any:
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.outputs["queue_url"],
                                              AttributeNames=list(names))["Attributes"]
        return attrs[names[0]] if len(names) == 1 else attrs

    def keys_below(self, prefix: str) -> list[str]:
        return [o["Key"] for o in self.client("s3").list_objects_v2(
            Bucket=self.outputs["bucket_name"], Prefix=prefix).get("Contents", [])]

    def poison_message(self) -> None:
        """A message that can never be stored reaches the dead-letter queue.

        On AWS a message the worker leaves alone comes back after the queue's
        visibility timeout (60 s, or 180 s with Lambda) and moves to the DLQ on
        the receive after maxReceiveCount; to keep the rehearsal short, the
        queue's visibility timeout is set to 1 s here, after the queue's real
        settings have been read (they are checked in the next phase)."""
        url = self.outputs["queue_url"]
        self.queue_attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "1"})
        # Receives already waiting keep the timeout they started with: let them end first.
        if self.hosting == "fargate":
            time.sleep(int(self.env_declared["worker"].get("POLL_INTERVAL", "10")) + 1)
        else:
            time.sleep(2)
        body = f"poison {uuid.uuid4()}: not a JSON email"
        self.sqs.send_message(QueueUrl=url, MessageBody=body)
        started = time.monotonic()

        def in_dlq() -> bool:
            self.assert_running()
            messages = self.sqs.receive_message(QueueUrl=self.outputs["dlq_url"], MaxNumberOfMessages=10,
                                                WaitTimeSeconds=1, VisibilityTimeout=0).get("Messages", [])
            return any(m["Body"] == body for m in messages)

        wait_until("the poison message in the dead-letter queue", in_dlq, 120, interval=0.5)
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout":
                                                                self.queue_attrs["VisibilityTimeout"]})
        self.say(f"   poison message in {self.outputs['dlq_url'].rsplit('/', 1)[-1]} after "
                 f"{time.monotonic() - started:.0f} s (visibility timeout 1 s)")
        keys = self.keys_below("")
        expected = 2 if getattr(self, "large_key", None) else 1
        self.check(len(keys) == expected and all(k.startswith(self.outputs["s3_key_prefix"]) for k in keys),
                   f"the bucket holds {keys}: expected only the system test's email and the large one")
        prefix = re.escape(self.outputs["s3_key_prefix"])
        name = r"[0-9]+-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\.json"
        shape = {"time": prefix + name, "hashed": prefix + "[0-9a-f]{2}/" + name}[self.key_layout]
        self.check(all(re.fullmatch(shape, k) for k in keys), f"the stored keys {keys} are not all of the "
                                                              f"{self.key_layout} layout")
        self.say(f"   stored keys, {self.key_layout} layout: {', '.join(keys)}")
        if self.hosting == "lambda":
            self.check(not self.esm.errors, f"the event source mapping failed: {self.esm.errors}")

    # --- 6. checks ---------------------------------------------------------------------

    def components(self) -> list[str]:
        return ["api", "worker"] if self.hosting == "fargate" else ["lambda-api", "lambda-worker"]

    def check_environment(self) -> None:
        reserved = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                    "AWS_SESSION_TOKEN", "AWS_LAMBDA_FUNCTION_NAME", "_HANDLER", "AWS_LAMBDA_RUNTIME_API"}
        for component in self.components():
            spec = self.manifest.components[component]
            declared = set(self.env_declared[component])
            unknown = declared - spec.required - spec.optional
            missing = spec.required - declared
            self.check(not unknown, f"{component}: sets {sorted(unknown)}, which the binary does not read")
            self.check(not missing, f"{component}: does not set {sorted(missing)}, which the binary requires")
            if component.startswith("lambda-"):
                clash = declared & reserved
                self.check(not clash, f"{component}: sets {sorted(clash)}, reserved by the Lambda runtime")

    def check_created_architecture(self) -> None:
        """What Terraform created runs on the variable's architecture: the task definition templates'
        runtime platform, or the functions, created from the zips of that architecture."""
        self.check(self.outputs.get("architecture") == self.architecture,
                   f"output architecture is {self.outputs.get('architecture')}, expected {self.architecture}")
        self.check(self.outputs.get("s3_key_layout") == self.key_layout,
                   f"output s3_key_layout is {self.outputs.get('s3_key_layout')}, expected {self.key_layout}")
        if self.hosting == "fargate":
            ecs = self.client("ecs")
            for part in ("api", "worker"):
                family = self.outputs[f"{part}_task_definition_family"]
                td = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
                self.check_runtime_platform(td)
            self.say(f"   task definition templates: runtime platform LINUX/{self.architecture.upper()}")
            return
        lam = self.client("lambda")
        for part in ("api", "worker"):
            name = self.outputs[f"lambda_{part}_function_name"]
            cfg = lam.get_function_configuration(FunctionName=name)
            want = base64.b64encode(hashlib.sha256(self.zips[part].read_bytes()).digest()).decode()
            self.check(cfg["Architectures"] == [self.architecture],
                       f"{name}: created for {cfg['Architectures']}, expected [{self.architecture}]")
            self.check(cfg["CodeSha256"] == want, f"{name}: created from code {cfg['CodeSha256']}, not the "
                                                  f"{self.architecture} zip {self.zips[part]} ({want})")
        self.say(f"   functions created for {self.architecture} from target/lambda/{self.architecture}/")

    def check_runtime_platform(self, td: dict[str, Any]) -> None:
        want = {"cpuArchitecture": self.architecture.upper(), "operatingSystemFamily": "LINUX"}
        self.check(td.get("runtimePlatform") == want,
                   f"{td['family']}:{td['revision']}: runtime platform {td.get('runtimePlatform')}, expected {want}")

    def check_architecture(self) -> None:
        """After the deploy: every revision of each family (Terraform's template and the deploy's copy)
        keeps the runtime platform, or each function runs on the architecture, as the variable names."""
        if self.hosting == "fargate":
            ecs = self.client("ecs")
            revisions = []
            for part in ("api", "worker"):
                family = self.outputs[f"{part}_task_definition_family"]
                for arn in ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]:
                    self.check_runtime_platform(ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"])
                    revisions.append(arn.rsplit("/", 1)[-1])
            self.say(f"   {', '.join(revisions)}: runtime platform LINUX/{self.architecture.upper()} "
                     f"(architecture {self.architecture})")
            return
        lam = self.client("lambda")
        for part in ("api", "worker"):
            name = self.outputs[f"lambda_{part}_function_name"]
            got = lam.get_function_configuration(FunctionName=name)["Architectures"]
            self.check(got == [self.architecture], f"{name}: runs on {got}, expected [{self.architecture}]")
        self.say(f"   both functions run on {self.architecture}, as the variable names")

    def check_queue(self) -> None:
        attrs = self.queue_attrs
        want_vt = self.claims.visibility_timeout[self.hosting]
        self.check(int(attrs["VisibilityTimeout"]) == want_vt,
                   f"the queue's visibility timeout is {attrs['VisibilityTimeout']} s; terraform/README.md "
                   f"states {want_vt} s for {self.hosting}")
        redrive = json.loads(attrs.get("RedrivePolicy") or "{}")
        self.check(redrive.get("deadLetterTargetArn") == self.dlq_arn,
                   f"the queue's redrive policy targets {redrive.get('deadLetterTargetArn')}, not the DLQ "
                   f"{self.dlq_arn}")
        self.check(int(redrive.get("maxReceiveCount", -1)) == self.claims.max_receive_count,
                   f"the queue's maxReceiveCount is {redrive.get('maxReceiveCount')}; terraform/README.md states "
                   f"{self.claims.max_receive_count}")
        dlq = self.sqs.get_queue_attributes(QueueUrl=self.outputs["dlq_url"], AttributeNames=["All"])["Attributes"]
        self.check(int(dlq["MessageRetentionPeriod"]) == self.claims.dlq_retention_seconds,
                   f"the DLQ keeps messages {dlq['MessageRetentionPeriod']} s; terraform/README.md states "
                   f"{self.claims.dlq_retention_seconds} s")
        allow = json.loads(dlq.get("RedriveAllowPolicy") or "{}")
        self.check(allow == {"redrivePermission": "byQueue", "sourceQueueArns": [self.queue_arn]},
                   f"the DLQ's redrive allow policy is {allow}, expected only {self.queue_arn}")
        for name, queue in (("queue", attrs), ("DLQ", dlq)):
            self.check(int(queue.get("MaximumMessageSize", -1)) == self.claims.max_message_size,
                       f"the {name} takes messages of up to {queue.get('MaximumMessageSize')} bytes; "
                       f"terraform/README.md states {self.claims.max_message_size}")
        self.dlq_attrs = dlq
        for url, arn in ((self.outputs["queue_url"], self.queue_arn), (self.outputs["dlq_url"], self.dlq_arn)):
            policy = json.loads(self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
                                .get("Attributes", {}).get("Policy") or "{}")
            plain = iam_policy.evaluate([policy], "sqs:ReceiveMessage", arn, {"aws:SecureTransport": "false"},
                                        resource_policy=True)
            self.check(not plain.allowed, f"{arn}: the queue policy does not refuse requests without TLS")
        bucket_policy = json.loads(self.client("s3").get_bucket_policy(Bucket=self.outputs["bucket_name"])["Policy"])
        email = self.resource_of("s3:PutObject")
        for context, refused in (({"aws:SecureTransport": "false", "s3:TlsVersion": "1.3"}, True),
                                 ({"aws:SecureTransport": "true", "s3:TlsVersion": "1.1"}, True),
                                 ({"aws:SecureTransport": "true", "s3:TlsVersion": "1.3"}, False)):
            d = iam_policy.evaluate([bucket_policy], "s3:PutObject", email, context, resource_policy=True)
            self.check(d.allowed != refused, f"the bucket policy {'allows' if d.allowed else 'refuses'} "
                                             f"s3:PutObject with {context} ({d.reason})")

    def check_bucket(self) -> None:
        """The lifecycle rule on the staging prefix, as S3 holds it: it expires
        staged emails later than any pointer can live (the queues' actual
        retention), aborts incomplete uploads, and reaches no stored email."""
        staging, key_prefix = self.outputs["s3_staging_prefix"], self.outputs["s3_key_prefix"]
        rules = [r for r in self.client("s3").get_bucket_lifecycle_configuration(
            Bucket=self.outputs["bucket_name"])["Rules"] if r.get("Status") == "Enabled"]

        def prefix_of(rule: dict[str, Any]) -> str:
            return (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", ""))

        longest = int(self.queue_attrs["MessageRetentionPeriod"]) + int(self.dlq_attrs["MessageRetentionPeriod"])
        expiring = [r for r in rules if prefix_of(r) == staging and (r.get("Expiration") or {}).get("Days")]
        if self.check(len(expiring) == 1, f"{len(expiring)} enabled lifecycle rules expire {staging}, expected one"):
            days = expiring[0]["Expiration"]["Days"]
            self.check(days * 86400 > longest,
                       f"staged emails expire after {days} days, not longer than a pointer can live (the queues' "
                       f"retention, {longest} s together)")
            self.check("AbortIncompleteMultipartUpload" in expiring[0],
                       f"the rule on {staging} does not abort incomplete uploads")
            self.say(f"   lifecycle: {staging} expires after {days} days, over the {longest / 86400:g} days a "
                     "pointer can live (queue and dead-letter queue retention)")
        for r in rules:
            expires = (r.get("Expiration") or {}).keys() & {"Days", "Date"}
            reaches = key_prefix.startswith(prefix_of(r)) or prefix_of(r).startswith(key_prefix)
            self.check(not (expires and reaches),
                       f"lifecycle rule {r.get('ID')} expires current objects below {prefix_of(r)!r}, stored "
                       f"emails ({key_prefix}) included")

    # IAM ------------------------------------------------------------------------------

    def role_documents(self, role_arn: str) -> list[dict[str, Any]]:
        iam = self.client("iam")
        role = role_arn.rsplit("/", 1)[-1]
        docs = [iam.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"]
                for p in iam.list_role_policies(RoleName=role)["PolicyNames"]]
        for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
            version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
            docs.append(iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)
                        ["PolicyVersion"]["Document"])
        return [json.loads(d) if isinstance(d, str) else d for d in docs]

    def resource_of(self, action: str) -> str:
        """The exact ARN the code calls an action on (S3: a stored email)."""
        service = action.split(":", 1)[0]
        if service == "sqs":
            return self.queue_arn
        if service == "ssm":
            return f"arn:aws:ssm:{self.region}:{ACCOUNT}:parameter/{self.outputs['token_parameter_name'].lstrip('/')}"
        if service == "s3":
            return self.object_arn(self.outputs["s3_key_prefix"])
        raise Failure(f"the rehearsal does not know which resource {action} acts on: add it to resource_of()")

    def object_arn(self, prefix: str) -> str:
        return f"arn:aws:s3:::{self.outputs['bucket_name']}/{prefix}{uuid.uuid4()}.json"

    def call_of(self, component: str, action: str) -> tuple[str, dict[str, str]]:
        """The ARN and condition keys of a call as the component makes it. The
        claim check: the API writes staged emails; the worker writes stored
        ones, reads and removes staged ones, and lists the bucket only as S3
        does for a read of a staged email that is gone (its key as
        s3:prefix)."""
        bucket = self.outputs["bucket_name"]
        staged_key = f"{self.outputs['s3_staging_prefix']}{uuid.uuid4()}.json"
        if action == "s3:ListBucket":
            return f"arn:aws:s3:::{bucket}", {"s3:prefix": staged_key}
        if action in ("s3:GetObject", "s3:DeleteObject") or (action == "s3:PutObject" and component.endswith("api")):
            return f"arn:aws:s3:::{bucket}/{staged_key}", {}
        return self.resource_of(action), {}

    def check_iam(self) -> None:
        all_actions = set().union(*(c.actions for c in self.manifest.components.values()))
        bucket = f"arn:aws:s3:::{self.outputs['bucket_name']}"
        key_prefix, staging = self.outputs["s3_key_prefix"], self.outputs["s3_staging_prefix"]
        for component in self.components():
            docs = self.role_documents(self.roles[component])
            spec = self.manifest.components[component]
            needed = {a: self.call_of(component, a) for a in spec.actions}
            if component == "lambda-worker":
                needed.update({a: (self.queue_arn, {}) for a in ESM_ACTIONS})
            for action, (resource, context) in sorted(needed.items()):
                d = iam_policy.evaluate(docs, action, resource, context)
                self.check(d.allowed, f"{component}: {self.roles[component]} may not {action} on {resource} "
                                      f"{context or ''}({d.reason}), which the code calls")
            for action in sorted(all_actions - set(needed)):
                resource, context = self.call_of(component, action)
                d = iam_policy.evaluate(docs, action, resource, context)
                self.check(not d.allowed, f"{component}: {self.roles[component]} may {action} on {resource} "
                                          f"({d.reason}), which only another component calls")
            # Nothing beyond the prefixes each component works in.
            refused = [("s3:PutObject", self.object_arn("elsewhere/"), {})]
            if component.endswith("api"):
                refused += [("s3:PutObject", self.object_arn(key_prefix), {})]
            else:
                refused += [("s3:PutObject", self.object_arn(staging), {}),
                            ("s3:GetObject", self.object_arn(key_prefix), {}),
                            ("s3:DeleteObject", self.object_arn(key_prefix), {}),
                            ("s3:ListBucket", bucket, {"s3:prefix": "elsewhere/"}),
                            ("s3:ListBucket", bucket, {})]
                # A staged copy gone: the email's own key, listed by name.
                found = ("s3:ListBucket", bucket, {"s3:prefix": f"{key_prefix}1796102737-{uuid.uuid4()}.json"})
                d = iam_policy.evaluate(docs, *found)
                self.check(d.allowed, f"{component}: may not list {found[2]['s3:prefix']} ({d.reason}), "
                                      "which the worker does when a staged copy is gone")
            for action, resource, context in refused:
                d = iam_policy.evaluate(docs, action, resource, context)
                self.check(not d.allowed, f"{component}: may {action} on {resource} {context or ''}({d.reason}), "
                                          "outside the prefixes it works in")
            self.say(f"   {component}: {self.roles[component].rsplit('/', 1)[-1]} allows exactly the calls "
                     f"of the manifest ({', '.join(sorted(needed))}), S3 only below "
                     f"{staging if component.endswith('api') else f'{key_prefix} (writes) and {staging}'}")

    def github_roles(self) -> dict[str, str]:
        """GitHub role -> the one OIDC subject it must trust (from production.tfvars.json)."""
        repo = self.tfvars["github_repository"]
        return {
            "deploy_role_arn": f"repo:{repo}:environment:{self.tfvars.get('github_deploy_environment', 'production')}",
            "terraform_role_arn": f"repo:{repo}:environment:"
                                  f"{self.tfvars.get('github_terraform_environment', 'terraform')}",
            "terraform_plan_role_arn": f"repo:{repo}:pull_request",
            "system_test_role_arn": f"repo:{repo}:ref:refs/heads/{self.tfvars.get('github_branch', 'main')}",
        }

    def check_github_roles(self) -> None:
        if not self.tfvars.get("github_repository"):
            self.say("   no github_repository in production.tfvars.json: no GitHub roles to check")
            return
        iam = self.client("iam")
        subjects = self.github_roles()
        providers = [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]
        for output, subject in subjects.items():
            role = self.outputs[output].rsplit("/", 1)[-1]
            trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
            trust = json.loads(trust) if isinstance(trust, str) else trust
            for other_output, other in subjects.items():
                context = {"token.actions.githubusercontent.com:sub": other,
                           "token.actions.githubusercontent.com:aud": "sts.amazonaws.com"}
                ok = any(
                    st.get("Effect") == "Allow" and st.get("Action") == "sts:AssumeRoleWithWebIdentity"
                    and (st.get("Principal") or {}).get("Federated") in providers
                    and iam_policy.evaluate([{"Statement": [{k: v for k, v in st.items() if k != "Principal"}
                                                            | {"Resource": "*"}]}],
                                            "sts:AssumeRoleWithWebIdentity", "*", context).allowed
                    for st in trust["Statement"])
                self.check(ok == (other == subject),
                           f"{role}: a job presenting {other} {'can' if ok else 'cannot'} assume it")
        self.say("   GitHub roles: each trusts exactly its own subject: " +
                 ", ".join(f"{o.removesuffix('_role_arn')} <- {s.split(':', 2)[2]}" for o, s in subjects.items()))

        # What each role must never do, and what the plan role must be able to do without AWS.
        plan = self.role_documents(self.outputs["terraform_plan_role_arn"])
        bucket, key = self.tfvars.get("terraform_state_bucket"), self.tfvars.get("terraform_state_key")
        token_arn = self.resource_of("ssm:GetParameter")
        email = self.resource_of("s3:PutObject")
        musts = []
        if bucket and key:
            state = f"arn:aws:s3:::{bucket}/{key}"
            musts += [("terraform_plan_role_arn", "s3:GetObject", state, True),
                      ("terraform_plan_role_arn", "s3:ListBucket", f"arn:aws:s3:::{bucket}", True),
                      ("terraform_plan_role_arn", "s3:GetObjectVersion", state, False),
                      ("terraform_plan_role_arn", "s3:PutObject", state, False)]
        for output in ("terraform_plan_role_arn", "deploy_role_arn"):
            musts += [(output, "ssm:GetParameter", token_arn, False), (output, "s3:GetObject", email, False),
                      (output, "sqs:ReceiveMessage", self.queue_arn, False), (output, "kms:Decrypt", "*", False)]
        musts += [("system_test_role_arn", "ssm:GetParameter", token_arn, True),
                  ("system_test_role_arn", "s3:GetObject", email, True),
                  ("system_test_role_arn", "s3:PutObject", email, False),
                  ("system_test_role_arn", "sqs:ReceiveMessage", self.queue_arn, False)]
        docs = {"terraform_plan_role_arn": plan}
        for output, action, resource, allowed in musts:
            docs.setdefault(output, self.role_documents(self.outputs[output]))
            d = iam_policy.evaluate(docs[output], action, resource)
            self.check(d.allowed == allowed, f"{output.removesuffix('_arn')}: {action} on {resource} is "
                                             f"{'allowed' if d.allowed else 'denied'} ({d.reason})")

    def check_observed_calls(self) -> None:
        """Every AWS call made during the run was allowed to the role that made it."""
        roles = {
            "terraform": self.outputs.get("terraform_role_arn"),
            "plan": self.outputs.get("terraform_plan_role_arn"),
            "deploy": self.outputs.get("deploy_role_arn"),
            "system_test": self.outputs.get("system_test_role_arn"),
        }
        if self.hosting == "fargate":
            roles.update(api=self.roles["api"], worker=self.roles["worker"])
            components = {"api": "api", "worker": "worker"}
        else:
            roles.update(api=self.roles["lambda-api"], worker=self.roles["lambda-worker"],
                         esm=self.roles["lambda-worker"])
            components = {"api": "lambda-api", "worker": "lambda-worker"}
        actor_of = {v: k for k, v in KEYS.items()}
        docs: dict[str, list[dict[str, Any]]] = {}
        seen: dict[str, set[str]] = {}
        denied: set[str] = set()
        missing: dict[str, list[bool]] = {}
        for entry, call in self.requests():
            actor = actor_of.get(call.key)
            if actor in (None, "rehearsal") or call.action in iam_policy.FREE:
                continue
            role = roles.get(actor)
            if role is None:
                self.check(actor in ("terraform", "plan", "deploy", "system_test") and
                           not self.tfvars.get("github_repository"), f"{actor}: made {call} but has no role")
                continue
            if role not in docs:
                docs[role] = self.role_documents(role)
            d = iam_policy.evaluate(docs[role], call.action, call.resource, call.context)
            if call.answers_missing_key:
                # Not a call: whether S3 answers a read of a missing key 404 or 403.
                missing.setdefault(actor, []).append(d.allowed)
                if actor in NOT_FOUND_MATTERS:
                    self.check(d.allowed, f"{actor} ({role.rsplit('/', 1)[-1]}) read {call.context['s3:prefix']}, "
                                          f"which was not there: S3 would answer 403, not the 404 the code takes "
                                          f"as 'removed after storing', since {call} is not allowed: {d.reason}")
                continue
            seen.setdefault(actor, set()).add(call.action)
            if not self.check(d.allowed, f"{actor} ({role.rsplit('/', 1)[-1]}) called {call}: {d.reason}"):
                denied.add(actor)
        for actor, component in components.items():
            extra = seen.get(actor, set()) - self.manifest.components[component].actions
            self.check(not extra, f"{component} called {sorted(extra)}, which its manifest does not list")
        if "esm" in seen:
            self.check(seen["esm"] <= ESM_ACTIONS, f"the event source mapping called {sorted(seen['esm'])}")
        for actor in ("plan", "deploy", "system_test", "api", "worker", "esm"):
            if actor in seen and actor not in denied:
                self.say(f"   {actor}: {len(seen[actor])} distinct actions, each allowed to its role: "
                         f"{', '.join(sorted(seen[actor]))}")
        for actor, answers in sorted(missing.items()):
            found = sum(answers)
            self.say(f"   {actor}: {len(answers)} read(s) of a missing key, which S3 answers 404 to its role "
                     f"{found} time(s) and 403 {len(answers) - found} time(s)"
                     + (" (the code relies on the 404)" if actor in NOT_FOUND_MATTERS else
                        " (it treats both as 'not there yet')"))

    # --- 7. destroy ------------------------------------------------------------------

    def destroy(self) -> None:
        # What an operator does first (terraform/README.md): the bucket and the repository
        # hold data Terraform does not delete (s3_force_destroy and ecr_force_delete are off).
        s3 = self.client("s3")
        bucket = self.outputs["bucket_name"]
        versions = s3.list_object_versions(Bucket=bucket)
        for item in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
        ecr = self.client("ecr")
        images = ecr.list_images(repositoryName=self.name)["imageIds"]
        if images:
            ecr.batch_delete_image(repositoryName=self.name, imageIds=images)
        # The task definition revisions the deploy registered: Terraform never owned them.
        if self.hosting == "fargate":
            ecs = self.client("ecs")
            for part in ("api", "worker"):
                ecs.deregister_task_definition(taskDefinition=self.tasks[part]["definition"]["taskDefinitionArn"])
        types = {line.split(".")[0] for line in subprocess.run(
            ["terraform", f"-chdir={self.tf}", "state", "list"], env=self.tf_env, check=True, capture_output=True,
            text=True).stdout.split() if not line.startswith(("data.", "ephemeral."))}
        unknown = types - set(KIND_OF)
        self.check(not unknown, f"the rehearsal cannot check that these are deleted: {sorted(unknown)} "
                                "(add them to KIND_OF and inventory())")
        self.terraform(["destroy", "-auto-approve", "-no-color", *self.tf_vars()], "destroy", timeout=600)
        left = self.inventory()
        for kind, ids in left.items():
            extra = ids - self.baseline.get(kind, set())
            self.check(not extra, f"left after destroy: {kind} {sorted(extra)}")
        self.say(f"   destroyed {len(types)} resource types; nothing of the {len(left)} kinds checked is left")


# ---------------------------------------------------------------------------


def git_sha() -> str:
    try:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        if re.fullmatch(r"[0-9a-f]{40}", sha):
            return sha
    except (OSError, subprocess.CalledProcessError):
        pass
    return uuid.uuid4().hex + "00000000"


def preflight(bin_dir: Path) -> Path | None:
    problems = []
    for binary in ("queue2bucket", "queue2bucket-api", "queue2bucket-worker"):
        if not os.access(bin_dir / binary, os.X_OK):
            problems.append(f"{bin_dir / binary} is missing (Q2B_BIN_DIR, or cargo build --workspace --bins)")
    for tool in ("terraform", "aws", "jq", "curl", "openssl", "unzip", "sha256sum"):
        if not shutil.which(tool):
            problems.append(f"{tool} is not on PATH")
    if not problems:
        version = json.loads(subprocess.run(["terraform", "version", "-json"], capture_output=True,
                                            check=True).stdout)["terraform_version"]
        if tuple(int(x) for x in version.split(".")[:2]) < (1, 11):
            problems.append(f"Terraform {version} is too old: the configuration needs >= 1.11")
    if problems:
        raise Failure("cannot rehearse:\n  - " + "\n  - ".join(problems))
    plugin_dir = Path(os.environ.get("TF_PLUGIN_DIR", "/opt/tf-plugins"))
    return plugin_dir if plugin_dir.is_dir() else None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), children before grandchildren."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name, in parentheses, may hold spaces: the ppid follows the last ")".
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found.extend(children)
        frontier = children
    return found


def start_watchdog(seconds: float, workdir: Path) -> threading.Timer:
    """Ends the rehearsal, moto, terraform and the binaries included, after `seconds`:
    a stuck step must fail the test command in minutes, not at CI's job timeout."""
    def expire() -> None:
        print(f"rehearse: FAILED: not finished within {seconds:.0f} s; logs and state kept in {workdir}",
              file=sys.stderr, flush=True)
        for pid in descendants(os.getpid()):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", type=Path, required=True,
                        help="directory with queue2bucket, queue2bucket-api and queue2bucket-worker")
    parser.add_argument("--hosting", choices=HOSTINGS, action="append",
                        help="rehearse only this hosting (repeatable; default: both)")
    parser.add_argument("--sequential", action="store_true", help="one hosting after the other (default: both at once)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, state) even on success")
    parser.add_argument("--deadline", type=float, default=900,
                        help="seconds after which the whole rehearsal fails (default 900; it takes about 4 minutes)")
    args = parser.parse_args(argv)

    started = time.monotonic()
    lock = threading.Lock()

    def out(line: str) -> None:
        with lock:
            print(line, flush=True)

    try:
        plugin_dir = preflight(args.bin_dir.resolve())
        manifest = load_manifest(args.bin_dir.resolve())
        claims = readme_queue_claims()
    except Failure as exc:
        print(f"rehearse: {exc}", file=sys.stderr)
        return 1

    workdir = Path(tempfile.mkdtemp(prefix="q2b-rehearsal-"))
    watchdog = start_watchdog(args.deadline, workdir)
    cache = workdir / "plugin-cache"
    cache.mkdir()
    sha = git_sha()
    out(f"rehearse: work directory {workdir}; provider from {plugin_dir or 'the registry'}; image tag {sha}")
    out("rehearse: moto gaps filled by terraform/rehearsal/moto_server.py (everything else must work as is):")
    for gap, why in GAPS:
        out(f"  - {gap}: {why}")

    hostings = args.hosting or list(HOSTINGS)
    results: dict[str, BaseException | None] = {}
    rehearsals = {h: Rehearsal(h, args.bin_dir.resolve(), workdir, manifest, claims, sha, out) for h in hostings}

    def one(hosting: str) -> None:
        try:
            rehearsals[hosting].run(plugin_dir, cache)
            results[hosting] = None
        except BaseException as exc:  # reported below, with the others
            results[hosting] = exc

    if args.sequential or len(hostings) == 1:
        for h in hostings:
            one(h)
    else:
        # Terraform against moto mostly waits (the provider's propagation checks), so the two
        # hostings run side by side, each with its own moto and state.
        threads = [threading.Thread(target=one, args=(h,), name=h) for h in hostings]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    failed = False
    print()
    for h in hostings:
        exc = results.get(h)
        r = rehearsals[h]
        timings = ", ".join(f"{key} {t:.0f} s" for key, t in r.timings)
        if exc is None:
            print(f"rehearse: {h}: passed ({timings})")
        else:
            failed = True
            detail = str(exc) if isinstance(exc, Failure) else "".join(traceback.format_exception(exc))
            print(f"rehearse: {h}: FAILED ({timings}):\n{detail}\n  logs: {r.dir}", file=sys.stderr)
    watchdog.cancel()
    print(f"rehearse: {'FAILED' if failed else 'passed'} in {time.monotonic() - started:.0f} s")
    if failed or args.keep:
        print(f"rehearse: logs and state kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
