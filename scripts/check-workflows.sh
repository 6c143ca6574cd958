#!/usr/bin/env bash
# Lints the GitHub Actions workflows, the shell scripts and the Dockerfile with
# the tools that scripts/setup.sh installs into ./.venv, and tests the
# workflows' structure:
#   actionlint  workflow syntax, expressions, and the shell of every run: step
#               (through ./.venv's shellcheck, which it must find)
#   ShellCheck  scripts/*.sh and .ci/run
#   zizmor      workflow security (pinning, permissions, injection), offline
#   hadolint    the Dockerfile, warnings and errors
#   terraform/tests/test_workflows.py
#               what linters cannot see: how the workflows chain, which job may
#               assume which role, one source of variables, job-level
#               concurrency, matching tool versions (see its docstring)
# Every one must pass without findings. Run from anywhere; works on the
# repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv/bin
for tool in actionlint zizmor hadolint shellcheck python; do
  if [ ! -x "$venv/$tool" ]; then
    echo "check-workflows: $venv/$tool is missing; run scripts/setup.sh" >&2
    exit 1
  fi
done
# actionlint runs the first shellcheck on PATH, and silently skips the shell
# checks without one: make it the pinned one of ./.venv.
export PATH="$PWD/$venv:$PATH"

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
scripts=(scripts/*.sh .ci/run)
shopt -u nullglob
if [ "${#workflows[@]}" -eq 0 ]; then
  echo "check-workflows: no workflows in .github/workflows" >&2
  exit 1
fi

echo "==> actionlint ($(shellcheck --version | sed -n 's/^version: /shellcheck /p'))"
actionlint -no-color -shellcheck "$PWD/$venv/shellcheck" "${workflows[@]}"

echo "==> shellcheck ${scripts[*]}"
shellcheck "${scripts[@]}"

echo "==> zizmor --offline .github/workflows"
zizmor --offline --no-progress .github/workflows

echo "==> hadolint -t warning Dockerfile"
hadolint -t warning Dockerfile

echo "==> terraform/tests/test_workflows.py"
PYTHONDONTWRITEBYTECODE=1 python terraform/tests/test_workflows.py

echo "check-workflows: all passed"
