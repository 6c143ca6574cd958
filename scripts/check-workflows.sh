#!/usr/bin/env bash
# Lints the GitHub Actions workflows and the Dockerfile with the tools that
# scripts/setup.sh installs into ./.venv:
#   actionlint  workflow syntax, expressions, and the shell of every run: step
#               (through shellcheck, when it is on PATH)
#   zizmor      workflow security (pinning, permissions, injection), offline
#   hadolint    the Dockerfile, warnings and errors
# Every one must pass without findings. Run from anywhere; works on the
# repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv/bin
for tool in actionlint zizmor hadolint; do
  if [ ! -x "$venv/$tool" ]; then
    echo "check-workflows: $venv/$tool is missing; run scripts/setup.sh" >&2
    exit 1
  fi
done

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
shopt -u nullglob
if [ "${#workflows[@]}" -eq 0 ]; then
  echo "check-workflows: no workflows in .github/workflows" >&2
  exit 1
fi

if command -v shellcheck >/dev/null; then
  echo "==> actionlint ($(shellcheck --version | sed -n 's/^version: //p' | head -n1 | sed 's/^/shellcheck /'))"
else
  echo "==> actionlint (shellcheck not on PATH: run: scripts are not checked)"
fi
"$venv/actionlint" -no-color "${workflows[@]}"

echo "==> zizmor --offline .github/workflows"
"$venv/zizmor" --offline --no-progress .github/workflows

echo "==> hadolint -t warning Dockerfile"
"$venv/hadolint" -t warning Dockerfile

echo "check-workflows: all passed"
