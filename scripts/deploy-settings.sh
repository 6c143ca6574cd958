#!/usr/bin/env bash
# Prints the deployment settings the workflows need, read from the one source
# of variables, terraform/production.tfvars.json (the file Terraform applies),
# as key=value lines for $GITHUB_OUTPUT:
#
#   hosting=fargate|lambda   name=<resource prefix>   region=<AWS region>
#   architecture=arm64|x86_64   (the Lambda zips a deploy takes: target/lambda/<architecture>/)
#   state_bucket=...  state_key=...   (the S3 backend; the bucket is in the same region)
#
#   scripts/deploy-settings.sh                      # checks and prints
#   scripts/deploy-settings.sh >>"$GITHUB_OUTPUT"   # in a workflow step
#
# Fails with a message naming the problem when a value is missing or
# malformed, or when the file names another GitHub repository than the one the
# workflow runs in ($GITHUB_REPOSITORY): the roles Terraform creates would then
# trust that repository, not this one.
#
# Environment: TFVARS (default terraform/production.tfvars.json),
# GITHUB_REPOSITORY (set by GitHub Actions; the check is skipped when unset).
set -euo pipefail

tfvars=${TFVARS:-$(dirname "$0")/../terraform/production.tfvars.json}

fail() {
  echo "deploy-settings: $tfvars: $*" >&2
  [ "${GITHUB_ACTIONS:-}" != true ] || echo "::error file=terraform/production.tfvars.json::$*"
  exit 1
}

command -v jq >/dev/null || fail "jq is not installed"
[ -f "$tfvars" ] || fail "does not exist"
jq -e 'type == "object"' "$tfvars" >/dev/null 2>&1 || fail "is not a JSON object"

# A string value with a default (Terraform's default for the variable) and a pattern it must match.
value() { # key, default, pattern, what
  local v
  v=$(jq -r --arg k "$1" --arg d "$2" 'if has($k) then .[$k] else $d end | if type == "string" then . else "\u0000" end' "$tfvars")
  [[ $v =~ $3 ]] || fail "$1 must be $4, not '$v'"
  printf '%s' "$v"
}

hosting=$(value hosting fargate '^(fargate|lambda)$' '"fargate" or "lambda"')
name=$(value name queue2bucket '^[a-z][a-z0-9-]{1,18}[a-z0-9]$' 'a resource prefix (3-20 lower-case letters, digits, hyphens)')
region=$(value region us-east-2 '^[a-z]{2}(-[a-z]+)+-[0-9]$' 'an AWS region such as us-east-2')
architecture=$(value architecture arm64 '^(arm64|x86_64)$' '"arm64" or "x86_64"')
repository=$(value github_repository '' '^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$' 'the GitHub repository ("owner/name") whose workflows deploy')
state_bucket=$(value terraform_state_bucket '' '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$' 'the name of the S3 bucket holding the Terraform state')
state_key=$(value terraform_state_key queue2bucket/terraform.tfstate '^[A-Za-z0-9!_.*()/-]+$' 'the key of the state object')

if [ -n "${GITHUB_REPOSITORY:-}" ] && [ "$repository" != "$GITHUB_REPOSITORY" ]; then
  fail "github_repository is '$repository' but this is $GITHUB_REPOSITORY: set it to $GITHUB_REPOSITORY (and apply) before the workflows can assume the roles"
fi

printf '%s\n' "hosting=$hosting" "name=$name" "region=$region" "architecture=$architecture" \
  "state_bucket=$state_bucket" "state_key=$state_key"
