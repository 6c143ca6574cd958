#!/usr/bin/env bash
# Builds the Lambda functions as deployable zips for the provided.al2023
# runtime, x86_64 (target/lambda/x86_64/queue2bucket-{api,worker}/bootstrap.zip,
# where scripts/lambda-arm64.sh also puts them, next to the arm64 pair it
# builds for CI and the deploy), then reports their sizes and init times
# (process start to ready to serve, SDK clients built), measured under a local
# Lambda Runtime API: the zips' own bootstrap runs here, so x86_64 only.
#   scripts/lambda-package.sh          20 starts per function
#   RUNS=50 scripts/lambda-package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

cargo lambda build --profile lambda --x86-64 --output-format zip --lambda-dir target/lambda/x86_64 \
  -p runtime-lambda --no-default-features
# The same build as scripts/bench.sh, so that the two share their artifacts.
cargo build --release --locked -p runtime-fargate -p bench --bins

# As Terraform configures functions under 1,769 MB (one vCPU or less).
export RUNTIME_THREADS=1
for name in queue2bucket-api queue2bucket-worker; do
  zip=target/lambda/x86_64/$name/bootstrap.zip
  bytes=$(stat -c %s "$zip")
  # The zip's own bootstrap, unpacked, is what Lambda runs.
  dir=$(mktemp -d)
  unzip -q -o "$zip" -d "$dir"
  init=$(target/release/q2b-bench lambda-init --binary "$dir/bootstrap" --runs "${RUNS:-20}")
  rm -rf "$dir"
  printf '%s: zip %s bytes (%.1f MiB); init %s\n' "$name" "$bytes" \
    "$(echo "$bytes / 1048576" | bc -l)" "$init"
done
