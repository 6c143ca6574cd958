#!/usr/bin/env bash
# Offline checks of terraform/:
#   1. terraform fmt
#   2. terraform init (without backend) + validate, in a temporary copy so that
#      no .terraform/ directory or lock file is left in the repository
#   3. checkov, which must report zero failed checks
#   4. tests/test_consistency.py against the binaries' manifest
#      (scripts/manifest.sh), plus its self-test showing that the
#      consistency checks can fail
#
# Run from anywhere; uses tools from ./.venv (scripts/setup.sh installs them).
# Environment:
#   Q2B_BIN_DIR      directory of the binaries (default target/debug)
#   TF_PLUGIN_DIR    local provider mirror (default /opt/tf-plugins); when it
#                    does not exist, terraform init downloads the provider
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv/bin
tf_dir=terraform
plugin_dir=${TF_PLUGIN_DIR:-/opt/tf-plugins}
bin_dir=${Q2B_BIN_DIR:-target/debug}

fail() {
  echo "check-terraform: $*" >&2
  exit 1
}

command -v terraform >/dev/null || fail "terraform is not on PATH (Terraform >= 1.5 is needed)"
if [ ! -x "$venv/checkov" ] || [ ! -x "$venv/python" ]; then
  fail "$venv/checkov or $venv/python is missing; run scripts/setup.sh first"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== terraform fmt -check -recursive $tf_dir"
terraform fmt -check -recursive -diff "$tf_dir" ||
  fail "terraform files are not formatted; run: terraform fmt -recursive $tf_dir"

echo "== terraform init -backend=false && terraform validate (in a temporary copy)"
mkdir "$tmp/tf"
# Copy the configuration without any local state or provider cache.
tar -C "$tf_dir" --exclude=.terraform --exclude=.terraform.lock.hcl --exclude='*.tfstate*' \
  --exclude=__pycache__ -cf - . | tar -C "$tmp/tf" -xf -
export TF_DATA_DIR="$tmp/tf/.terraform"
export TF_IN_AUTOMATION=1
init_args=(-backend=false -input=false -no-color)
if [ -d "$plugin_dir" ]; then
  init_args+=("-plugin-dir=$plugin_dir")
else
  echo "check-terraform: provider mirror $plugin_dir does not exist; terraform init downloads hashicorp/aws from the registry"
fi
if ! init_log=$(terraform -chdir="$tmp/tf" init "${init_args[@]}" 2>&1); then
  echo "$init_log" >&2
  fail "terraform init failed"
fi
terraform -chdir="$tmp/tf" validate -no-color

echo "== checkov"
"$venv/checkov" -d "$tf_dir" --framework terraform --skip-download --compact --quiet

echo "== consistency with the manifest of the binaries in $bin_dir"
scripts/manifest.sh "$bin_dir" >"$tmp/manifest.json" || fail "scripts/manifest.sh $bin_dir failed"
"$venv/python" "$tf_dir/tests/test_consistency.py" --manifest "$tmp/manifest.json"

echo "== consistency self-test (deliberate mismatches must be reported)"
"$venv/python" "$tf_dir/tests/test_consistency.py" --self-test --manifest "$tmp/manifest.json"

echo "check-terraform: all checks passed"
