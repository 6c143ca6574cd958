#!/usr/bin/env bash
# Builds the Lambda functions as deployable zips for the provided.al2023
# runtime (x86_64 here; arm64 builds run in GitHub Actions, see lambda.yml),
# then reports their sizes and init times (process start to ready to serve,
# SDK clients built), measured under a local Lambda Runtime API.
#   scripts/lambda-package.sh          20 starts per function
#   RUNS=50 scripts/lambda-package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

cargo lambda build --release --output-format zip -p runtime-lambda --no-default-features
# The same build as scripts/bench.sh, so that the two share their artifacts.
cargo build --release --locked -p runtime-fargate -p bench --bins

for name in queue2bucket-api queue2bucket-worker; do
  zip=target/lambda/$name/bootstrap.zip
  bytes=$(stat -c %s "$zip")
  # The zip's own bootstrap, unpacked, is what Lambda runs.
  dir=$(mktemp -d)
  unzip -q -o "$zip" -d "$dir"
  init=$(target/release/q2b-bench lambda-init --binary "$dir/bootstrap" --runs "${RUNS:-20}")
  rm -rf "$dir"
  printf '%s: zip %s bytes (%.1f MiB); init %s\n' "$name" "$bytes" \
    "$(echo "$bytes / 1048576" | bc -l)" "$init"
done
