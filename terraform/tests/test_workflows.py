#!/usr/bin/env python3
"""What the linters cannot see in the workflows, checked offline.

actionlint and zizmor check each workflow on its own; these tests check how
the workflows and the Terraform configuration fit together, for the ways a
pipeline passes every linter and still goes wrong on a real repository:

- chaining: only Release is triggered by another workflow (CI, one link), the
  commit it deploys comes from that one event and is handed to every later
  job through `needs`, and nothing triggered by a workflow_run is itself a
  trigger for another one;
- roles: every job that can get an AWS token assumes exactly one role, the
  one whose OIDC subject it presents (its GitHub environment, or none), and
  runs no build or install step; build jobs get no id-token;
- one source of variables: no TF_VAR_ anywhere, every plan and apply reads
  production.tfvars.json, whose keys are all declared variables;
- concurrency: no deploying workflow has a workflow-level group; the deploy
  jobs and the apply job share one job-level group;
- versions: one Terraform version everywhere, satisfying versions.tf, an
  exact provider version, one moto version (requirements-dev.txt and
  compose.yaml); the arm64 Lambda build runs on pull requests;
- the scripts the workflows run exist, and scripts/deploy-settings.sh reads
  the real tfvars file, refuses bad ones, and falls back to the variables'
  own defaults (variables.tf) for what the file leaves out;
- architecture: the Lambda zips the Terraform workflow builds and the deploy
  uploads are those of the architecture production.tfvars.json names;
- the Docker build context: built from the tracked files as .dockerignore
  filters them, it holds every workspace member's manifest and target sources
  (cargo loads them all, even to build runtime-fargate alone: `cargo metadata`
  must succeed in it), and leaves out what the image does not compile.

Run by scripts/check-workflows.sh (python terraform/tests/test_workflows.py).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path
from typing import Any, Iterator

import hcl2
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
TF = REPO / "terraform"
TFVARS = json.loads((TF / "production.tfvars.json").read_text())

# The role each repository variable names, and the environment a job must run
# in to present the subject that role trusts (None: no environment).
ROLE_ENVIRONMENT = {
    "AWS_DEPLOY_ROLE_ARN": TFVARS.get("github_deploy_environment", "production"),
    "AWS_TERRAFORM_ROLE_ARN": TFVARS.get("github_terraform_environment", "terraform"),
    "AWS_TERRAFORM_PLAN_ROLE_ARN": None,
    "AWS_SYSTEM_TEST_ROLE_ARN": None,
}

# Steps that build or install third-party code: never in a job holding an AWS token.
BUILD_ACTIONS = ("actions/setup-python", "actions/setup-node", "Swatinem/rust-cache", "docker/build-push-action",
                 "docker/setup-buildx-action", "dtolnay/rust-toolchain")
BUILD_COMMANDS = re.compile(r"\b(cargo|rustup|pip3?|npm|npx|yarn|docker build|docker buildx|make)\b|scripts/("
                            r"setup|test|lambda-arm64|lambda-package|bench)\.sh")

# What a job holding an AWS token may run, and nothing else: the deploy steps'
# scripts, the AWS, registry and GitHub CLIs, Terraform, and shell built-ins.
TOKEN_JOB_ACTIONS = ("actions/checkout", "actions/download-artifact", "aws-actions/amazon-ecr-login",
                     "aws-actions/configure-aws-credentials", "hashicorp/setup-terraform")
TOKEN_JOB_COMMANDS = {
    "scripts/deploy.sh", "scripts/system-test.sh", "scripts/deploy-settings.sh", "../scripts/terraform-plan.sh",
    "aws", "skopeo", "jq", "gh", "terraform",
    "set", "echo", "printf", "cat", "tee", "exit", "test", "[", "[[", "true", "false",
}
SHELL_WORDS = {"if", "then", "else", "elif", "fi", "for", "in", "do", "done", "while", "until", "case", "esac", "!",
               "]", "]]"}


def commands_of(script: str) -> set[str]:
    """The command names a shell step runs: the first word of each simple command, with quoted text,
    comments and variable assignments set aside (enough for the workflows' own steps)."""
    # An escaped backquote is text; a bare one opens or closes a command substitution.
    text = script.replace("\\\n", " ").replace("\\`", "").replace("`", "\n")
    text = re.sub(r"'[^']*'", "Q", text)
    # A command substitution inside double quotes still runs: keep it, blank the rest.
    text = re.sub(r'"(?:[^"\\]|\\.)*"',
                  lambda m: " ".join(f"$({c})" for c in re.findall(r"\$\(([^()]*)\)", m.group(0))) or "Q", text)
    text = re.sub(r"(?m)^\s*#.*$", "", text)
    found = set()
    for part in re.split(r"\$\(|\|\||&&|[|;\n{}()]", text):
        words = [w for w in part.split() if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)]
        if words and words[0] in ("for", "case", "select"):
            continue  # "for NAME in WORDS": no command until "do"
        while words and words[0] in SHELL_WORDS:
            words = words[1:]
        if words and not words[0].startswith(("Q", ">", "<", "2>")):
            found.add(words[0])
    return found


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def workflows() -> dict[str, dict[str, Any]]:
    return {p.name: load(p.name) for p in sorted(WORKFLOWS.glob("*.yml"))}


def triggers(wf: dict[str, Any]) -> dict[str, Any]:
    on = wf["on"]
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return on


def jobs(wf: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from wf.get("jobs", {}).items()


def text_of(value: Any) -> str:
    return json.dumps(value)


def variable_defaults() -> dict[str, Any]:
    """Each variable's default in terraform/variables.tf."""
    with (TF / "variables.tf").open(encoding="utf-8") as f:
        parsed = hcl2.load(f)
    return {name: body.get("default", [None])[0] for block in parsed.get("variable", [])
            for name, body in block.items()}


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """The rules of a .dockerignore as Docker reads them (moby/patternmatcher):
    (is an `!` exception, regex). A pattern is a cleaned path without a
    leading /, matched as Go's filepath.Match does (`*` and `?` stop at /,
    `[...]` classes, `\\` escapes), plus `**`: any number of directories."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = posixpath.normpath(line[1:].strip() if exception else line).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            c = pattern[i]
            if pattern.startswith("**", i):
                i += 2 if pattern[i + 2:i + 3] != "/" else 3
                regex += ".*" if i >= len(pattern) else "(.*/)?"
                continue
            if c == "*":
                regex += "[^/]*"
            elif c == "?":
                regex += "[^/]"
            elif c == "[" and "]" in pattern[i + 1:]:
                end = pattern.index("]", i + 1)
                regex += pattern[i:end + 1]
                i = end
            elif c == "\\" and i + 1 < len(pattern):
                i += 1
                regex += re.escape(pattern[i])
            else:
                regex += re.escape(c)
            i += 1
        rules.append((exception, re.compile(f"^{regex}$")))
    return rules


def docker_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves `path` out: each pattern is matched against the
    path and each of its parent directories, and the last rule that matches
    wins (an `!` exception takes the path back in)."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for exception, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not exception
    return ignored


def in_docker_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether `path` is sent with the build context. Stricter than Docker
    on one point, on purpose: a file under a directory that is itself left out
    counts as left out, exception or not (`bench/` then `!bench/Cargo.toml`),
    since the builder need not walk into an excluded directory."""
    parts = path.split("/")
    return not any(docker_ignored("/".join(parts[:n]), rules) for n in range(1, len(parts) + 1))


def docker_context(dest: Path) -> list[str]:
    """Copies the tracked files that .dockerignore lets through into `dest`
    (the build context CI sends, from a checkout), and returns their paths."""
    rules = dockerignore_rules((REPO / ".dockerignore").read_text())
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split("\0")
    kept = []
    for name in filter(None, tracked):
        source = REPO / name
        if source.is_file() and in_docker_context(name, rules):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
            kept.append(name)
    return kept


def cargo_metadata(directory: Path) -> subprocess.CompletedProcess[str]:
    """The workspace's members and their targets, without resolving or
    fetching any dependency: what cargo reads of every member before it builds
    any one of them."""
    return subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked", "--offline"],
                          cwd=directory, capture_output=True, text=True)


class ChainingTest(unittest.TestCase):
    def test_only_release_chains_and_only_from_ci(self) -> None:
        chained = {name: triggers(wf)["workflow_run"]["workflows"]
                   for name, wf in workflows().items() if "workflow_run" in triggers(wf)}
        self.assertEqual(chained, {"release.yml": ["CI"]},
                         "a workflow triggered by another workflow's run (workflow_run)")
        ci = load("ci.yml")
        self.assertEqual(ci["name"], "CI")
        self.assertNotIn("workflow_run", triggers(ci), "CI must be triggered by the push itself (one link only)")

    def test_release_deploys_the_sha_ci_tested_through_needs(self) -> None:
        release = load("release.yml")
        text = (WORKFLOWS / "release.yml").read_text()
        self.assertNotIn("github.sha", text, "in a workflow_run run, github.sha is the tip of main, not the tested commit")
        head_sha_jobs = [name for name, job in jobs(release) if "workflow_run.head_sha" in text_of(job)]
        self.assertEqual(head_sha_jobs, ["resolve"], "head_sha must be read once, by the resolve job")
        deploy = release["jobs"]["deploy"]
        self.assertEqual(deploy["uses"], "$/.github/workflows/deploy.yml")
        self.assertEqual(set(deploy["needs"]), {"resolve", "push-image"})
        self.assertEqual(deploy["with"]["image_tag"], "${{ needs.resolve.outputs.sha }}")
        self.assertEqual(deploy["with"]["lambda_zips_run_id"], "${{ needs.resolve.outputs.ci_run_id }}")
        push = release["jobs"]["push-image"]
        self.assertIn("needs.resolve.outputs.hosting == 'fargate'", push["if"], "no image push with Lambda hosting")
        self.assertIn("needs.resolve.outputs.sha", text_of(push))

    def test_artifacts_deployed_are_the_ones_ci_uploads(self) -> None:
        ci = load("ci.yml")
        uploads = {step["with"]["name"] for _, job in jobs(ci) for step in job.get("steps", [])
                   if step.get("uses", "").startswith("actions/upload-artifact@")}
        self.assertEqual(uploads, {"image-${{ github.sha }}", "lambda-zips-${{ github.sha }}"})
        release, deploy = load("release.yml"), load("deploy.yml")
        downloads = {step["with"]["name"] for wf in (release, deploy) for _, job in jobs(wf)
                     for step in job.get("steps", []) if step.get("uses", "").startswith("actions/download-artifact@")}
        self.assertEqual(downloads, {"image-${{ needs.resolve.outputs.sha }}",
                                     "lambda-zips-${{ needs.settings.outputs.image_tag }}"})

    def test_arm64_lambda_build_runs_on_pull_requests(self) -> None:
        ci = load("ci.yml")
        self.assertIn("pull_request", triggers(ci))
        job = ci["jobs"]["lambda"]
        self.assertNotIn("if", job, "the arm64 build must run on every pull request")
        self.assertIn("scripts/lambda-arm64.sh", text_of(job))
        self.assertIn("cargo lambda build --profile lambda --arm64", (REPO / "scripts" / "lambda-arm64.sh").read_text())


class RolesTest(unittest.TestCase):
    def id_token_jobs(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for name, wf in workflows().items():
            for job_name, job in jobs(wf):
                if (job.get("permissions") or {}).get("id-token") == "write":
                    yield name, job_name, job

    def test_each_token_job_assumes_the_role_its_subject_fits(self) -> None:
        seen = set()
        for name, job_name, job in self.id_token_jobs():
            where = f"{name}: {job_name}"
            if "uses" in job:  # a reusable workflow: its own jobs are checked where they are defined
                self.assertTrue(job["uses"].startswith("$/.github/workflows/"), where)
                continue
            roles = set(re.findall(r"vars\.(AWS_[A-Z_]+_ROLE_ARN)", text_of(job)))
            self.assertEqual(len(roles), 1, f"{where} must assume exactly one role, not {sorted(roles)}")
            role = roles.pop()
            self.assertIn(role, ROLE_ENVIRONMENT, f"{where}: unknown role variable {role}")
            self.assertEqual(job.get("environment"), ROLE_ENVIRONMENT[role],
                             f"{where}: the role in {role} trusts only jobs in environment {ROLE_ENVIRONMENT[role]}")
            seen.add(role)
            if role == "AWS_TERRAFORM_PLAN_ROLE_ARN":
                self.assertIn("github.event_name == 'pull_request'", job["if"], where)
        self.assertEqual(seen, set(ROLE_ENVIRONMENT), "every role is used by some job")

    def test_token_jobs_build_and_install_nothing(self) -> None:
        for name, job_name, job in self.id_token_jobs():
            for step in job.get("steps", []):
                uses = step.get("uses", "")
                self.assertFalse(uses.startswith(BUILD_ACTIONS), f"{name}: {job_name} uses {uses} next to an AWS token")
                run = step.get("run", "")
                self.assertIsNone(BUILD_COMMANDS.search(run), f"{name}: {job_name} builds or installs: {run!r}")

    def test_token_jobs_run_only_what_is_allowed(self) -> None:
        # An allow-list, not only the build steps above: anything new next to an AWS token is a decision.
        for name, job_name, job in self.id_token_jobs():
            for step in job.get("steps", []):
                if "uses" in step:
                    self.assertIn(step["uses"].split("@")[0], TOKEN_JOB_ACTIONS, f"{name}: {job_name}")
                unknown = commands_of(step.get("run", "")) - TOKEN_JOB_COMMANDS
                self.assertFalse(unknown, f"{name}: {job_name} runs {sorted(unknown)} next to an AWS token")

    def test_the_command_reader_finds_every_command(self) -> None:
        script = 'set -e\nX=$(gh run list --jq \'.[0]\') \\\n  && curl -s "$U" | sh\n# pip install\n'
        script += 'if [ -n "$A" ]; then cargo build; fi\nfor a in 1 2; do make; done\n{ echo "x"; } >>"$F"\n'
        script += 'echo "v=$(pip install x)" `npm ci`\n'
        self.assertEqual(commands_of(script),
                         {"set", "gh", "curl", "sh", "[", "cargo", "make", "echo", "pip", "npm"})

    def test_build_jobs_get_no_token(self) -> None:
        for name, wf in workflows().items():
            for job_name, job in jobs(wf):
                builds = any(s.get("uses", "").startswith(BUILD_ACTIONS) or BUILD_COMMANDS.search(s.get("run", ""))
                             for s in job.get("steps", []))
                if builds:
                    self.assertNotEqual((job.get("permissions") or {}).get("id-token"), "write",
                                        f"{name}: {job_name} builds with an AWS token")

    def test_only_the_apply_job_runs_in_the_terraform_environment(self) -> None:
        environments = {(name, job_name): job.get("environment") for name, wf in workflows().items()
                        for job_name, job in jobs(wf) if job.get("environment")}
        terraform_env = ROLE_ENVIRONMENT["AWS_TERRAFORM_ROLE_ARN"]
        self.assertEqual([k for k, v in environments.items() if v == terraform_env], [("terraform.yml", "apply")])
        self.assertNotEqual(terraform_env, ROLE_ENVIRONMENT["AWS_DEPLOY_ROLE_ARN"])

    def test_every_workflow_starts_without_permissions(self) -> None:
        for name, wf in workflows().items():
            self.assertEqual(wf.get("permissions"), {}, f"{name}: needs a top-level permissions: {{}}")


class VariablesTest(unittest.TestCase):
    def test_one_source_of_variables(self) -> None:
        for path in [*WORKFLOWS.glob("*.yml"), *(REPO / "scripts").glob("*.sh")]:
            self.assertNotIn("TF_VAR_", path.read_text(), f"{path.name}: Terraform variables come from the tfvars file")
        plan = (REPO / "scripts" / "terraform-plan.sh").read_text()
        self.assertIn("-var-file=production.tfvars.json", plan)
        terraform = load("terraform.yml")
        runs = [s.get("run", "") for _, job in jobs(terraform) for s in job.get("steps", [])]
        self.assertFalse([r for r in runs if re.search(r"terraform (plan|apply)\b", r) and "tfplan" not in r],
                         "every plan goes through scripts/terraform-plan.sh, every apply applies its tfplan")
        self.assertIn("-refresh=false -lock=false", text_of(terraform["jobs"]["plan"]))

    def test_tfvars_declares_only_known_variables(self) -> None:
        declared = set(re.findall(r'^variable "([a-z0-9_]+)"', (TF / "variables.tf").read_text(), re.M))
        self.assertEqual(set(TFVARS) - declared, set())
        for key in ("hosting", "region", "name", "github_repository", "terraform_state_bucket"):
            self.assertIn(key, TFVARS, f"production.tfvars.json must set {key}")

    def test_deploy_settings_reads_the_tfvars(self) -> None:
        script = REPO / "scripts" / "deploy-settings.sh"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
        out = subprocess.run([str(script)], capture_output=True, text=True, env=env, check=True).stdout
        settings = dict(line.split("=", 1) for line in out.splitlines())
        self.assertEqual(settings["hosting"], TFVARS["hosting"])
        self.assertEqual(settings["name"], TFVARS.get("name", "queue2bucket"))
        self.assertEqual(settings["architecture"], TFVARS.get("architecture", variable_defaults()["architecture"]))
        bad_cases = [
            ({**TFVARS, "hosting": "ec2"}, {}, "hosting"),
            ({**TFVARS, "region": 5}, {}, "region"),
            ({**TFVARS, "architecture": "amd64"}, {}, "architecture"),
            (TFVARS, {"GITHUB_REPOSITORY": "someone/else"}, "someone/else"),
        ]
        for data, extra, needle in bad_cases:
            with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
                json.dump(data, f)
                f.flush()
                r = subprocess.run([str(script)], capture_output=True, text=True, env={**env, "TFVARS": f.name, **extra})
            self.assertNotEqual(r.returncode, 0, f"accepted {data} {extra}")
            self.assertIn(needle, r.stderr)


    def test_deploy_settings_defaults_are_the_variables_defaults(self) -> None:
        """What the file leaves out, the workflows take as Terraform does."""
        keys = {"hosting": "hosting", "name": "name", "region": "region", "architecture": "architecture",
                "state_key": "terraform_state_key"}
        minimal = {k: TFVARS[k] for k in ("github_repository", "terraform_state_bucket")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(minimal, f)
            f.flush()
            out = subprocess.run([str(REPO / "scripts" / "deploy-settings.sh")], capture_output=True, text=True,
                                 env={**env, "TFVARS": f.name}, check=True).stdout
        settings = dict(line.split("=", 1) for line in out.splitlines())
        defaults = variable_defaults()
        for output, variable in keys.items():
            self.assertEqual(settings[output], defaults[variable], f"deploy-settings.sh's default for {variable}")


class ArchitectureTest(unittest.TestCase):
    def test_lambda_zips_are_those_of_the_architecture(self) -> None:
        """The deploy uploads, and the Terraform workflow builds, the zips of
        the architecture deploy-settings.sh reads from production.tfvars.json."""
        deploy = load("deploy.yml")
        self.assertEqual(deploy["jobs"]["settings"]["outputs"]["architecture"],
                         "${{ steps.settings.outputs.architecture }}")
        steps = [s for s in deploy["jobs"]["lambda"]["steps"] if "scripts/deploy.sh" in s.get("run", "")]
        self.assertEqual(len(steps), 1)
        self.assertEqual(steps[0]["run"], 'scripts/deploy.sh lambda "$DIR/$ARCHITECTURE"')
        self.assertEqual(steps[0]["env"]["ARCHITECTURE"], "${{ needs.settings.outputs.architecture }}")
        terraform = load("terraform.yml")
        self.assertEqual(terraform["jobs"]["settings"]["outputs"]["architecture"],
                         "${{ steps.settings.outputs.architecture }}")
        builds = [s for s in terraform["jobs"]["lambda-zips"]["steps"] if "scripts/lambda-arm64.sh" in s.get("run", "")]
        self.assertEqual(len(builds), 1)
        self.assertEqual(builds[0]["run"], 'scripts/lambda-arm64.sh "$ARCHITECTURE"')
        self.assertEqual(builds[0]["env"]["ARCHITECTURE"], "${{ needs.settings.outputs.architecture }}")


class ConcurrencyTest(unittest.TestCase):
    def test_deploying_workflows_have_no_workflow_level_group(self) -> None:
        for name in ("release.yml", "deploy.yml", "terraform.yml", "system-test.yml"):
            self.assertNotIn("concurrency", load(name), f"{name}: concurrency belongs on the jobs that deploy")

    def test_deploys_and_applies_share_one_job_level_group(self) -> None:
        groups = {}
        for name, wf in workflows().items():
            for job_name, job in jobs(wf):
                changes = "scripts/deploy.sh" in text_of(job) or "terraform apply" in text_of(job)
                if changes:
                    groups[(name, job_name)] = job.get("concurrency")
        self.assertEqual(set(groups), {("deploy.yml", "ecs"), ("deploy.yml", "lambda"), ("terraform.yml", "apply")})
        values = {json.dumps(g, sort_keys=True) for g in groups.values()}
        self.assertEqual(values, {json.dumps({"cancel-in-progress": False,
                                              "group": "deploy-${{ needs.settings.outputs.name }}"}, sort_keys=True)})

    def test_terraform_changes_to_templates_are_rolled_out(self) -> None:
        rollout = load("terraform.yml")["jobs"]["rollout"]
        self.assertEqual(rollout["uses"], "$/.github/workflows/deploy.yml")
        self.assertEqual(rollout["with"]["image_tag"], "running")
        self.assertIn("needs.apply.outputs.templates_changed == 'true'", rollout["if"])


class VersionsTest(unittest.TestCase):
    def test_one_terraform_version_that_versions_tf_accepts(self) -> None:
        found = set()
        for name, wf in workflows().items():
            text = (WORKFLOWS / name).read_text()
            found |= set(re.findall(r'terraform_version: "(\d+\.\d+\.\d+)"', text))
            found |= set(re.findall(r'TF_VERSION: "(\d+\.\d+\.\d+)"', text))
        self.assertEqual(len(found), 1, f"Terraform versions in the workflows: {found}")
        version = tuple(int(x) for x in found.pop().split("."))
        required = re.search(r'required_version = ">= (\d+)\.(\d+)"', (TF / "versions.tf").read_text())
        self.assertIsNotNone(required)
        self.assertGreaterEqual(version[:2], tuple(int(x) for x in required.groups()))

    def test_the_provider_version_is_exact(self) -> None:
        m = re.search(r'source\s*=\s*"hashicorp/aws"\s*\n\s*(?:#.*\n\s*)*version\s*=\s*"([^"]+)"',
                      (TF / "versions.tf").read_text())
        self.assertIsNotNone(m)
        self.assertRegex(m.group(1), r"^= ?\d+\.\d+\.\d+$", "plan and apply must run the same provider build")

    def test_one_moto_version(self) -> None:
        pinned = re.search(r"^moto\[server\]==(\S+)", (REPO / "requirements-dev.txt").read_text(), re.M).group(1)
        images = set(re.findall(r"motoserver/moto:(\S+)", (REPO / "compose.yaml").read_text()))
        self.assertEqual(images, {pinned})


class FilesTest(unittest.TestCase):
    def test_reusable_workflows_are_this_repositorys_files(self) -> None:
        # Called with the self-repository syntax ($/…: the running commit's own file, no checkout
        # needed), and the file must exist.
        for name, wf in workflows().items():
            for job_name, job in jobs(wf):
                uses = job.get("uses")
                if uses is None:
                    continue
                where = f"{name}: {job_name} uses {uses}"
                self.assertTrue(uses.startswith("$/.github/workflows/"), where)
                self.assertTrue((REPO / uses[2:]).is_file(), where)

    def test_scripts_the_workflows_run_exist(self) -> None:
        for name in workflows():
            for script in set(re.findall(r"scripts/[a-z0-9-]+\.sh", (WORKFLOWS / name).read_text())):
                path = REPO / script
                self.assertTrue(path.is_file() and os.access(path, os.X_OK), f"{name} runs {script}")

    def test_dockerignore_rules_follow_docker(self) -> None:
        def kept(text: str, path: str) -> bool:
            return in_docker_context(path, dockerignore_rules(text))
        self.assertFalse(kept("bench/\n", "bench/src/main.rs"))
        self.assertFalse(kept("bench/\n!bench/Cargo.toml\n", "bench/Cargo.toml"), "no exception under an excluded dir")
        rules = "bench/*\n!bench/Cargo.toml\n!bench/src\n"
        self.assertTrue(kept(rules, "bench/Cargo.toml"))
        self.assertTrue(kept(rules, "bench/src/main.rs"))
        self.assertFalse(kept(rules, "bench/bench.py"))
        self.assertFalse(kept("*.md\n", "README.md"))
        self.assertTrue(kept("*.md\n", "bench/results.md"), "* stops at /")
        self.assertFalse(kept("**/*.md\n", "bench/results.md"))
        self.assertFalse(kept("**/target/\n", "target/debug/queue2bucket"), "** matches no directory too")
        self.assertFalse(kept("/handlers/fuzz//\n", "handlers/fuzz/corpus/x"), "patterns are cleaned paths")
        self.assertTrue(kept("*.md\n!README*.md\n", "README.md"), "the last matching rule wins")
        self.assertFalse(kept("!README.md\n*.md\n", "README.md"), "the last matching rule wins")
        self.assertFalse(kept("data?.[jt]son\n", "data1.json"))
        self.assertTrue(kept("data?.[jt]son\n", "data12.json"))

    def test_docker_context_leaves_out_what_the_image_does_not_need(self) -> None:
        rules = dockerignore_rules((REPO / ".dockerignore").read_text())
        left_out = ("README.md", "terraform/README.md", "bench/bench.py", "bench/results.json", "bench/results.md",
                    "bench/chart.svg", "handlers/fuzz/Cargo.toml", "handlers/fuzz/corpus/submission/00a4898d",
                    "integration/tests/pipeline.rs", "terraform/main.tf", "terraform/production.tfvars.json",
                    ".github/workflows/ci.yml", "scripts/test.sh", "target/debug/queue2bucket",
                    "bench/target/release/q2b-bench", ".venv/bin/python", ".git/HEAD", ".env", "Dockerfile")
        for path in left_out:
            self.assertFalse(in_docker_context(path, rules), f"{path} must stay out of the build context")
        needed = ("Cargo.toml", "Cargo.lock", "requirements-zigbuild.txt", "handlers/Cargo.toml",
                  "handlers/src/lib.rs", "handlers/src/api/openapi.json", "runtime-fargate/Cargo.toml",
                  "runtime-fargate/src/main.rs", "runtime-lambda/Cargo.toml", "runtime-lambda/src/bin/queue2bucket-api.rs",
                  "integration/Cargo.toml", "integration/src/lib.rs", "bench/Cargo.toml", "bench/src/main.rs")
        for path in needed:
            self.assertTrue(in_docker_context(path, rules), f"the image build needs {path}")

    def test_docker_context_holds_every_workspace_member(self) -> None:
        """`cargo chef prepare` and `cargo zigbuild -p runtime-fargate` load
        every member's manifest and targets: a member .dockerignore leaves out
        breaks the image build, even one the image does not compile."""
        members = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["members"]
        real = cargo_metadata(REPO)
        self.assertEqual(real.returncode, 0, real.stderr)
        metadata = json.loads(real.stdout)
        root = Path(metadata["workspace_root"])
        packages = {Path(p["manifest_path"]).parent.relative_to(root).as_posix(): p for p in metadata["packages"]}
        self.assertEqual(set(packages), set(members))
        with tempfile.TemporaryDirectory() as tmp:
            context = Path(tmp)
            kept = set(docker_context(context))
            found = cargo_metadata(context)
            self.assertEqual(found.returncode, 0, f"cargo metadata in the build context: {found.stderr}")
            self.assertEqual(sorted(p["name"] for p in json.loads(found.stdout)["packages"]),
                             sorted(p["name"] for p in metadata["packages"]))
            for member in members:
                self.assertTrue(f"{member}/Cargo.toml" in kept, f"the build context lacks workspace member {member}")
                manifest = tomllib.loads((REPO / member / "Cargo.toml").read_text())
                declared = {t["name"] for kind in ("test", "bench", "example") for t in manifest.get(kind, [])}
                for target in packages[member]["targets"]:
                    # Tests, benches and examples cargo finds on its own may be
                    # left out (integration/tests/): it just finds none.
                    if set(target["kind"]) <= {"test", "bench", "example"} and target["name"] not in declared:
                        continue
                    source = Path(target["src_path"]).relative_to(root).as_posix()
                    self.assertTrue(source in kept, f"{member}: the build context lacks {source}")
                    # nor the modules and included files next to it
                    folder = posixpath.dirname(source) + "/"
                    tracked = subprocess.run(["git", "ls-files", "-z", "--", folder], cwd=REPO, capture_output=True,
                                             text=True, check=True).stdout.split("\0")
                    missing = sorted(f for f in filter(None, tracked) if (REPO / f).is_file() and f not in kept)
                    self.assertEqual(missing, [], f"{member}: the build context lacks these sources")

if __name__ == "__main__":
    unittest.main(verbosity=1)
