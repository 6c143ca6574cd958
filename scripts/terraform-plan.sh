#!/usr/bin/env bash
# The Terraform workflow's plan step: `terraform plan` of the one source of
# variables (production.tfvars.json) into tfplan, with the arguments given
# (-refresh=false -lock=false for pull requests, -lock-timeout=5m on main),
# and its results as step outputs. scripts/rehearse.sh runs it the same way
# against the emulator.
#
#   cd terraform && ../scripts/terraform-plan.sh [terraform plan arguments...]
#
# Writes to $GITHUB_OUTPUT (when set):
#   exitcode            0 no changes, 2 changes (1 fails the step)
#   summary             "N to add, N to change, N to destroy, N to replace"
#   plan                the plan as text (at most 60,000 bytes), for the pull request comment
#   templates_changed   true when an ECS task definition template is created or replaced:
#                       the services then need a deploy to run it (see terraform/ecs.tf)
# and a summary line to $GITHUB_STEP_SUMMARY.
set -euo pipefail

out=${GITHUB_OUTPUT:-/dev/null}
summary_file=${GITHUB_STEP_SUMMARY:-/dev/null}

set +e
terraform plan -input=false -no-color -detailed-exitcode -var-file=production.tfvars.json -out=tfplan "$@" \
  >plan.log 2>&1
exitcode=$?
set -e
cat plan.log
echo "exitcode=$exitcode" >>"$out"

templates_changed=false
if [ "$exitcode" -eq 1 ]; then
  summary="failed"
  text=$(tail -c 60000 plan.log)
else
  terraform show -json tfplan >plan.json
  summary=$(jq -r '
    [.resource_changes[]?.change.actions] as $a
    | ([$a[] | select(. == ["create"])] | length) as $add
    | ([$a[] | select(. == ["update"])] | length) as $change
    | ([$a[] | select(. == ["delete"])] | length) as $destroy
    | ([$a[] | select(index("delete") and index("create"))] | length) as $replace
    | "\($add) to add, \($change) to change, \($destroy) to destroy, \($replace) to replace"' plan.json)
  if jq -e '[.resource_changes[]? | select(.type == "aws_ecs_task_definition" and (.change.actions | index("create")))]
            | length > 0' plan.json >/dev/null; then
    templates_changed=true
  fi
  rm -f plan.json
  text=$(terraform show -no-color tfplan | head -c 60000)
fi
delimiter="EOF_$(openssl rand -hex 16)"
{
  echo "summary=$summary"
  echo "templates_changed=$templates_changed"
  echo "plan<<$delimiter"
  echo "$text"
  echo "$delimiter"
} >>"$out"
echo "### Terraform plan: $summary" >>"$summary_file"
echo "terraform-plan: $summary (exit code $exitcode; task definition templates changed: $templates_changed)"
[ "$exitcode" -ne 1 ]
