#!/usr/bin/env bash
# Runs the whole stack on this machine against moto (an AWS-compatible server)
# on loopback: starts moto, creates the queue (with a dead-letter queue), the
# bucket and the token parameter, then runs the API and the worker until
# Ctrl-C. Needs ./.venv (scripts/setup.sh, run here if missing).
#
#   scripts/run-moto.sh            API on :8000, moto on :5000
#   PORT=9000 MOTO_PORT=5001 TOKEN=secret scripts/run-moto.sh
set -euo pipefail
cd "$(dirname "$0")/.."

port=${PORT:-8000}
moto_port=${MOTO_PORT:-5000}
token=${TOKEN:-local-token}
[ -x .venv/bin/moto_server ] || scripts/setup.sh

export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_ACCESS_KEY_ID=test \
  AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  AWS_EC2_METADATA_DISABLED=true

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

.venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  curl -fsS "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1 && break
  sleep 0.2
done

eval "$(TOKEN="$token" .venv/bin/python - <<'PY'
import json, os, boto3
sqs, s3, ssm = boto3.client("sqs"), boto3.client("s3"), boto3.client("ssm")
dlq = sqs.create_queue(QueueName="queue2bucket-dlq")["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
queue = sqs.create_queue(QueueName="queue2bucket", Attributes={
    "VisibilityTimeout": "60",
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
})["QueueUrl"]
s3.create_bucket(Bucket="queue2bucket-emails")
ssm.put_parameter(Name="/queue2bucket/token", Value=os.environ["TOKEN"], Type="SecureString", Overwrite=True)
print(f"export SQS_QUEUE_URL={queue} S3_BUCKET_NAME=queue2bucket-emails TOKEN_PARAM_NAME=/queue2bucket/token")
PY
)"

cargo build --quiet -p runtime-fargate --bin queue2bucket
export LOG_FORMAT=${LOG_FORMAT:-text}
PORT=$port target/debug/queue2bucket api &
pids+=($!)
target/debug/queue2bucket worker &
pids+=($!)

cat <<MSG

Queue2Bucket is running against moto at $AWS_ENDPOINT_URL (Ctrl-C stops everything).
  API:    http://127.0.0.1:$port      token: $token
  Queue:  $SQS_QUEUE_URL
  Bucket: $S3_BUCKET_NAME

Post an email:
  curl -s http://127.0.0.1:$port/email -H 'content-type: application/json' \\
    -d '{"data":{"email_subject":"Hello","email_sender":"alice@example.com","email_timestream":"1732780800","email_content":"Hi Bob"},"token":"$token"}'
List the bucket:
  aws --endpoint-url $AWS_ENDPOINT_URL s3 ls s3://$S3_BUCKET_NAME/emails/

MSG
wait
