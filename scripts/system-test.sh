#!/usr/bin/env bash
# End-to-end test of a deployed Queue2Bucket, the original system's system
# test: the API answers its health check through the load balancer, an email
# posted with the token from Parameter Store is stored in the bucket byte for
# byte, and a wrong token gets a 401. Run by .github/workflows/system-test.yml
# after every deploy, and by scripts/rehearse.sh against what Terraform created
# on the emulator.
#
# Environment:
#   HOSTING                  fargate (default) or lambda: where to read the deployed settings
#   NAME                     resource name prefix (terraform variable `name`; default queue2bucket)
#   API_URL                  the API's base URL (terraform output api_url); default: http:// and
#                            the load balancer's DNS name (only right without a certificate)
#   S3_BUCKET_NAME, TOKEN_PARAM_NAME, S3_KEY_PREFIX, S3_KEY_LAYOUT
#                            optional; by default read from the deployed task definitions or functions
#   HEALTH_TIMEOUT_SECONDS   how long the health check may take to pass (default 180)
#   DELIVERY_TIMEOUT_SECONDS how long the email may take to reach the bucket (default 180)
#   AWS_ENDPOINT_URL         only for emulators: passed to the AWS CLI as --endpoint-url
#   CURL_CONNECT_TO          only for the rehearsal: curl --connect-to value that sends requests
#                            for the load balancer's name to its stand-in on loopback
#   GITHUB_STEP_SUMMARY, RUNNER_TEMP, GITHUB_RUN_ID, GITHUB_RUN_ATTEMPT   set by GitHub Actions
set -euo pipefail

hosting=${HOSTING:-fargate}
name=${NAME:-queue2bucket}
health_timeout=${HEALTH_TIMEOUT_SECONDS:-180}
delivery_timeout=${DELIVERY_TIMEOUT_SECONDS:-180}
run_id="${GITHUB_RUN_ID:-local}.${GITHUB_RUN_ATTEMPT:-1}"

fail() {
  echo "system-test: FAILED: $*" >&2
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
curl_() {
  local args=(-sS --max-time 30)
  [ -z "${CURL_CONNECT_TO:-}" ] || args+=(--connect-to "$CURL_CONNECT_TO")
  curl "${args[@]}" "$@"
}
for tool in aws curl jq cmp sha256sum; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
case $hosting in fargate | lambda) ;; *) fail "HOSTING must be fargate or lambda, not '$hosting'" ;; esac

work=$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/system-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- The deployment under test ------------------------------------------------

# One environment variable of a deployed container or function.
setting() { # api|worker, variable name
  local value task_definition
  if [ "$hosting" = lambda ]; then
    value=$(aws_ lambda get-function-configuration --function-name "$name-$1" \
      --query "Environment.Variables.$2" --output text)
  else
    task_definition=$(aws_ ecs describe-services --cluster "$name" --services "$name-$1" \
      --query 'services[0].taskDefinition' --output text)
    value=$(aws_ ecs describe-task-definition --task-definition "$task_definition" \
      --query "taskDefinition.containerDefinitions[?name=='$1'] | [0].environment[?name=='$2'] | [0].value" \
      --output text)
  fi
  [ "$value" != None ] || value=""
  printf '%s' "$value"
}

api_url=${API_URL:-}
if [ -z "$api_url" ]; then
  dns=$(aws_ elbv2 describe-load-balancers --names "$name" --query 'LoadBalancers[0].DNSName' --output text) ||
    fail "set API_URL (terraform output api_url): no load balancer named $name"
  api_url="http://$dns"
fi
api_url=${api_url%/}
[[ $api_url =~ ^https?://[A-Za-z0-9.:-]+(/[A-Za-z0-9._~/-]*)?$ ]] || fail "API_URL '$api_url' is not an http(s) URL"
bucket=${S3_BUCKET_NAME:-$(setting worker S3_BUCKET_NAME)}
token_param=${TOKEN_PARAM_NAME:-$(setting api TOKEN_PARAM_NAME)}
key_prefix=${S3_KEY_PREFIX:-$(setting worker S3_KEY_PREFIX)}
key_prefix=${key_prefix:-emails/}
key_layout=${S3_KEY_LAYOUT:-$(setting worker S3_KEY_LAYOUT)}
key_layout=${key_layout:-time}
[ -n "$bucket" ] || fail "could not find the bucket name; set S3_BUCKET_NAME"
[ -n "$token_param" ] || fail "could not find the token parameter; set TOKEN_PARAM_NAME"
case $key_layout in time | hashed) ;; *) fail "the worker's key layout is '$key_layout', neither time nor hashed" ;; esac
echo "system-test: API $api_url, bucket $bucket, key prefix $key_prefix ($key_layout layout)," \
  "token parameter $token_param ($hosting)"

# --- Health check ---------------------------------------------------------------

deadline=$((SECONDS + health_timeout))
status=""
until status=$(curl_ -o "$work/health.json" -w '%{http_code}' "$api_url/") && [ "$status" = 200 ]; do
  ((SECONDS < deadline)) || fail "GET $api_url/ did not answer 200 within $health_timeout s (last status: ${status:-none})"
  sleep 5
done
jq -e '.status == "ok"' "$work/health.json" >/dev/null ||
  fail "GET $api_url/ answered 200 but not {\"status\":\"ok\"}: $(head -c 300 "$work/health.json")"
echo "system-test: GET $api_url/: 200 $(cat "$work/health.json")"

# --- Post an email with the real token -----------------------------------------

token=$(aws_ ssm get-parameter --name "$token_param" --with-decryption --query Parameter.Value --output text)
[ "${GITHUB_ACTIONS:-}" != true ] || echo "::add-mask::$token"
[ -n "$token" ] || fail "the token parameter $token_param is empty"

# The `data` object, as exact text: unusual spacing, escapes, non-ASCII
# characters and a number with a trailing zero must all come back unchanged.
data="$work/data.json"
printf '{"email_subject": "System test %s",  "email_sender":"system-test@queue2bucket.invalid",\n "email_timestream": "%s", "email_content": "Gr\xc3\xbc\xc3\x9fe \xe2\x80\x93 \\"quoted\\" \\u00e9\\n\xe2\x9c\x93", "extra": {"n": 1.50, "list": [1, 2 ,3]}}' \
  "$run_id" "$(date +%s)" >"$data"
jq -e . "$data" >/dev/null || fail "the test's own data object is not JSON"

post() { # token, response file -> status
  { printf '{"data":'; cat "$data"; printf ',"token":%s}' "$(jq -n --arg t "$1" '$t')"; } >"$work/request.json"
  curl_ -o "$2" -w '%{http_code}' -H 'content-type: application/json' --data-binary "@$work/request.json" "$api_url/email"
  rm -f "$work/request.json"
}

status=$(post "$token" "$work/response.json")
[[ $status == 200 ]] || fail "POST $api_url/email answered $status: $(head -c 500 "$work/response.json")"
id=$(jq -r '.id // empty' "$work/response.json")
[[ $id =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] ||
  fail "POST $api_url/email answered $status without an email id: $(head -c 500 "$work/response.json")"
echo "system-test: POST $api_url/email: $status, id $id"

# --- A wrong token is refused ---------------------------------------------------

status=$(post "not-the-token-$run_id" "$work/refused.json")
[ "$status" = 401 ] || fail "POST $api_url/email with a wrong token answered $status, not 401: $(head -c 300 "$work/refused.json")"
echo "system-test: POST $api_url/email with a wrong token: 401 $(cat "$work/refused.json")"

# --- The object in the bucket, byte for byte -------------------------------------

# The key is <prefix><unix-seconds>-<id>.json, the seconds taken from the
# UUIDv7 id (its first 48 bits are Unix milliseconds); with the hashed
# layout, <prefix><2 hex digits>/<unix-seconds>-<id>.json, the two digits the
# first byte of the SHA-256 of the id as text.
hex=${id//-/}
millis=$((16#${hex:0:12}))
name="$((millis / 1000))-${id}.json"
if [ "$key_layout" = hashed ]; then
  spread=$(printf '%s' "$id" | sha256sum)
  key="${key_prefix}${spread:0:2}/$name"
else
  key="${key_prefix}$name"
fi
started=$SECONDS
deadline=$((SECONDS + delivery_timeout))
until aws_ s3api get-object --bucket "$bucket" --key "$key" "$work/stored.json" >/dev/null 2>&1; do
  ((SECONDS < deadline)) ||
    fail "s3://$bucket/$key did not appear within $delivery_timeout s; check the worker's logs and the dead-letter queue"
  sleep 2
done
echo "system-test: s3://$bucket/$key appeared after $((SECONDS - started)) s"
if ! cmp -s "$data" "$work/stored.json"; then
  echo "--- posted ($(wc -c <"$data") bytes)"
  cat "$data"
  echo
  echo "--- stored ($(wc -c <"$work/stored.json") bytes)"
  cat "$work/stored.json"
  echo
  fail "s3://$bucket/$key differs from the posted data object"
fi
echo "system-test: passed: s3://$bucket/$key matches the posted data byte for byte"
[ -z "${GITHUB_STEP_SUMMARY:-}" ] ||
  echo "### System test passed: s3://$bucket/$key matches the posted data byte for byte" >>"$GITHUB_STEP_SUMMARY"
