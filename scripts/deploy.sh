#!/usr/bin/env bash
# Deploys Queue2Bucket to what Terraform created: the logic of the deploy jobs
# of .github/workflows/deploy.yml, kept here so that scripts/rehearse.sh runs
# the very same steps against the emulator.
#
#   scripts/deploy.sh ecs <image tag>     roll both ECS services out to <repo>:<tag>
#   scripts/deploy.sh ecs running         roll both out to the image each runs now
#                                         (after Terraform changed a template); a
#                                         service that never ran a released image
#                                         gets the newest one in ECR
#   scripts/deploy.sh lambda <zip dir>    update both functions' code from
#                                         <zip dir>/queue2bucket-{api,worker}/bootstrap.zip,
#                                         the zips of one architecture: target/lambda/<architecture>
#
# Lambda: a function's architecture goes with its code (UpdateFunctionCode
# takes both; Terraform sets it only when it creates the function). Each
# zip's architecture is read from its bootstrap's ELF header, both zips must
# be of one architecture (ARCHITECTURE's, when it is set), and each function
# gets its code with that architecture, so that a change of the architecture
# variable reaches the functions with the next deploy, code and architecture
# at once. Nothing is updated when a zip does not fit.
#
# ECS: Terraform owns the task definition templates, this script the running
# image (terraform/ecs.tf). For each service it takes the newest revision of
# the service's family (Terraform's template, or the previous deploy's copy of
# it), replaces only the image of the service's container, registers that as
# a new revision and points the service at it; then it follows the deployment
# until ECS reports it COMPLETED, and fails when the circuit breaker marks it
# FAILED or rolls it back (waiting for the service to be stable would also
# succeed after a rollback).
#
# Environment:
#   NAME                    resource name prefix (terraform variable `name`; default queue2bucket)
#   ARCHITECTURE            Lambda: the architecture the zips must be of (arm64 or x86_64;
#                           scripts/deploy-settings.sh prints it); unset: whichever they are
#   AWS_REGION              region (the AWS CLI's usual settings and credentials apply)
#   AWS_ENDPOINT_URL        only for emulators: passed to the AWS CLI as --endpoint-url
#   DEPLOY_TIMEOUT_SECONDS  how long to follow a deployment (default 1200)
#   GITHUB_STEP_SUMMARY     when set, a summary line per service or function goes there
set -euo pipefail

name=${NAME:-queue2bucket}
timeout=${DEPLOY_TIMEOUT_SECONDS:-1200}
poll=${DEPLOY_POLL_SECONDS:-15}

fail() {
  echo "deploy: error: $*" >&2
  [ "${GITHUB_ACTIONS:-}" != true ] || echo "::error::$*"
  exit 1
}

aws_() {
  if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
    aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"
  else
    aws "$@"
  fi
}

summary() {
  echo "deploy: $*"
  [ -z "${GITHUB_STEP_SUMMARY:-}" ] || echo "- $*" >>"$GITHUB_STEP_SUMMARY"
}

# The fields register-task-definition accepts, out of describe-task-definition.
register_fields='["family","taskRoleArn","executionRoleArn","networkMode","containerDefinitions","volumes",
  "placementConstraints","requiresCompatibilities","cpu","memory","pidMode","ipcMode","proxyConfiguration",
  "inferenceAccelerators","ephemeralStorage","runtimePlatform","enableFaultInjection"]'

deploy_ecs() {
  local tag=$1 repository_uri service container family base image revision services=() revisions=()
  if [ "$tag" != running ] && ! [[ $tag =~ ^[0-9a-f]{40}$ ]]; then
    fail "the image tag must be a full commit SHA (40 lower-case hex characters) or 'running', not '$tag'"
  fi
  repository_uri=$(aws_ ecr describe-repositories --repository-names "$name" \
    --query 'repositories[0].repositoryUri' --output text) ||
    fail "no ECR repository $name: has Terraform created it?"
  if [ "$tag" != running ]; then
    aws_ ecr describe-images --repository-name "$name" --image-ids "imageTag=$tag" >/dev/null ||
      fail "no image $name:$tag in ECR: it is pushed by the release workflow's push job"
  fi

  for container in api worker; do
    service="$name-$container"
    family="$name-$container"
    base=$(aws_ ecs describe-task-definition --task-definition "$family" --query taskDefinition --output json) ||
      fail "no task definition family $family: has Terraform created it (hosting = fargate)?"
    if [ "$tag" = running ]; then
      local current
      current=$(aws_ ecs describe-services --cluster "$name" --services "$service" \
        --query 'services[0].taskDefinition' --output text) || fail "cannot describe service $service"
      [ -n "$current" ] && [ "$current" != None ] || fail "service $service does not exist: has Terraform created it?"
      image=$(aws_ ecs describe-task-definition --task-definition "$current" \
        --query "taskDefinition.containerDefinitions[?name=='$container'] | [0].image" --output text)
      if ! [[ $image == "$repository_uri:"* && ${image##*:} =~ ^[0-9a-f]{40}$ ]]; then
        # A service Terraform has just created (first apply, or a switch to
        # Fargate) runs the template's placeholder: take the newest release.
        local newest
        newest=$(aws_ ecr describe-images --repository-name "$name" --output json |
          jq -r '[.imageDetails[] | select(any(.imageTags[]?; test("^[0-9a-f]{40}$")))]
                 | sort_by(.imagePushedAt) | last | (.imageTags // [])[] | select(test("^[0-9a-f]{40}$"))' | head -n1)
        [ -n "$newest" ] || fail "service $service runs '$image' and ECR holds no released image: release a commit first"
        echo "deploy: $service runs '$image', not a release; deploying the newest image in ECR, $newest"
        image="$repository_uri:$newest"
      fi
    else
      image="$repository_uri:$tag"
    fi
    jq -e --arg c "$container" '[.containerDefinitions[] | select(.name == $c)] | length == 1' <<<"$base" >/dev/null ||
      fail "task definition family $family has no single container named $container"
    jq --arg c "$container" --arg image "$image" --argjson fields "$register_fields" '
      with_entries(select(.key as $k | $fields | index($k)))
      | .containerDefinitions |= map(if .name == $c then .image = $image else . end)' \
      <<<"$base" >"${tmp:?}/$family.json"
    revision=$(aws_ ecs register-task-definition --cli-input-json "file://$tmp/$family.json" \
      --query taskDefinition.taskDefinitionArn --output text)
    echo "deploy: $service: registered $revision ($image) from $(jq -r '"\(.family):\(.revision)"' <<<"$base")"
    aws_ ecs update-service --cluster "$name" --service "$service" --task-definition "$revision" \
      --query 'service.serviceName' --output text >/dev/null
    services+=("$service")
    revisions+=("$revision")
  done

  local deadline=$((SECONDS + timeout)) i state pending
  while :; do
    pending=0
    for i in "${!services[@]}"; do
      [ -n "${revisions[$i]}" ] || continue
      state=$(aws_ ecs describe-services --cluster "$name" --services "${services[$i]}" --output json |
        jq -r --arg td "${revisions[$i]}" '
          .services[0].deployments as $d
          | ([$d[] | select(.taskDefinition == $td)] | first) as $mine
          | if $mine == null then "GONE"
            elif $mine.status != "PRIMARY" then "SUPERSEDED"
            else ($mine.rolloutState // "IN_PROGRESS") end')
      case $state in
        COMPLETED)
          summary "${services[$i]} runs ${revisions[$i]##*/}"
          revisions[i]=""
          ;;
        FAILED | GONE) fail "${services[$i]}: the deployment of ${revisions[$i]##*/} failed ($state); ECS rolled it back" ;;
        SUPERSEDED) fail "${services[$i]}: another deployment replaced ${revisions[$i]##*/} before it completed" ;;
        *) pending=1 ;;
      esac
    done
    [ "$pending" -eq 1 ] || break
    ((SECONDS < deadline)) || fail "deployments still in progress after $timeout s"
    sleep "$poll"
  done
}

# The architecture a zip's bootstrap is built for, from its ELF header (e_machine), into $zip_arch.
zip_architecture() { # zip
  local header
  unzip -p "$1" bootstrap >"$tmp/bootstrap" 2>/dev/null || fail "$1 holds no bootstrap"
  header=$(od -An -tx1 -N20 "$tmp/bootstrap" | tr -d ' \n')
  [ "${header:0:8}" = 7f454c46 ] || fail "$1: bootstrap is not an ELF executable"
  case ${header:36:4} in
    b700) zip_arch=arm64 ;;  # EM_AARCH64
    3e00) zip_arch=x86_64 ;; # EM_X86_64
    *) fail "$1: bootstrap is built for ELF machine ${header:36:4}, neither arm64 nor x86_64" ;;
  esac
}

deploy_lambda() {
  local dir=$1 function zip want answer got arch="" architecture
  case ${ARCHITECTURE:-} in
    "" | arm64 | x86_64) ;;
    *) fail "ARCHITECTURE must be arm64 or x86_64, not '$ARCHITECTURE'" ;;
  esac
  # Every zip checked before any function changes.
  for function in api worker; do
    zip="$dir/queue2bucket-$function/bootstrap.zip"
    [ -f "$zip" ] || fail "$zip does not exist (scripts/lambda-arm64.sh ${ARCHITECTURE:-<architecture>})"
    zip_architecture "$zip"
    if [ -n "${ARCHITECTURE:-}" ] && [ "$zip_arch" != "$ARCHITECTURE" ]; then
      fail "$zip is built for $zip_arch, but the functions run on $ARCHITECTURE: deploy the zips of $ARCHITECTURE (target/lambda/$ARCHITECTURE)"
    fi
    [ -z "$arch" ] || [ "$arch" = "$zip_arch" ] || fail "the zips in $dir are built for $arch and $zip_arch"
    arch=$zip_arch
  done
  for function in api worker; do
    zip="$dir/queue2bucket-$function/bootstrap.zip"
    want=$(openssl dgst -sha256 -binary "$zip" | base64)
    echo "deploy: updating $name-$function from $zip ($(stat -c %s "$zip") bytes, $arch)"
    answer=$(aws_ lambda update-function-code --function-name "$name-$function" --zip-file "fileb://$zip" \
      --architectures "$arch" --query '[CodeSha256, Architectures[0]]' --output text)
    read -r got architecture <<<"$answer"
    [ "$got" = "$want" ] || fail "$name-$function reports code $got, not the zip's $want"
    [ "$architecture" = "$arch" ] || fail "$name-$function reports architecture $architecture, not the zip's $arch"
    aws_ lambda wait function-updated-v2 --function-name "$name-$function"
    summary "$name-$function runs code $want ($arch)"
  done
}

[ $# -eq 2 ] || fail "usage: $0 ecs <image tag>|running, or $0 lambda <zip dir>"
command -v aws >/dev/null || fail "the AWS CLI is not installed"
command -v jq >/dev/null || fail "jq is not installed"
[ "$1" != lambda ] || command -v unzip >/dev/null || fail "unzip is not installed"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
case $1 in
  ecs) deploy_ecs "$2" ;;
  lambda) deploy_lambda "$2" ;;
  *) fail "unknown target '$1': ecs or lambda" ;;
esac
