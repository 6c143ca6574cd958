#!/usr/bin/env bash
# The deploy rehearsal: applies terraform/ to moto on loopback (for hosting =
# fargate, then lambda, each from an empty state), deploys with the deploy
# workflow's script, runs the binaries with exactly what Terraform declared,
# runs the system test workflow's script against them, checks roles,
# environments and settings against what the code needs, destroys everything
# and checks that nothing is left. No AWS account, no Docker. See the README's
# Deployment section and terraform/rehearsal/rehearse.py.
#
#   scripts/rehearse.sh                     both hostings (about 5 minutes)
#   scripts/rehearse.sh --hosting lambda    one hosting
#   scripts/rehearse.sh --keep              keep logs and state of a passing run
#
# Environment:
#   Q2B_BIN_DIR    directory holding queue2bucket, queue2bucket-api and
#                  queue2bucket-worker; when unset, they are built with
#                  `cargo build --workspace --bins --locked` into target/debug
#   TF_PLUGIN_DIR  provider mirror holding hashicorp/aws 5.100.0 (default
#                  /opt/tf-plugins); without it terraform init downloads it
#
# Needs: ./.venv (scripts/setup.sh: moto, boto3), Terraform >= 1.11, the AWS
# CLI, jq, curl, openssl, unzip and sha256sum.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || scripts/setup.sh
export PYTHONDONTWRITEBYTECODE=1

echo "rehearse: unit tests of the rehearsal's own logic"
.venv/bin/python -m unittest discover -s terraform/rehearsal -p 'test_*.py'

if [ -n "${Q2B_BIN_DIR:-}" ]; then
  bin_dir=$Q2B_BIN_DIR
else
  cargo build --workspace --bins --locked
  bin_dir=target/debug
fi
exec .venv/bin/python terraform/rehearsal/rehearse.py --bin-dir "$bin_dir" "$@"
