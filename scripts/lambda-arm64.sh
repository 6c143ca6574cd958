#!/usr/bin/env bash
# Builds the two Lambda functions as the Lambda hosting runs them (arm64,
# provided.al2023): target/lambda/queue2bucket-{api,worker}/bootstrap.zip,
# with the cargo-lambda of requirements-dev.txt (which cross-compiles with
# zig). Checks that each zip holds an executable aarch64 `bootstrap`, and
# writes the commit it was built from to target/lambda/commit. Run by CI on
# every pull request and push (the Release workflow deploys the zips of main)
# and by the Terraform workflow before an apply that may create the functions.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "lambda-arm64: $*" >&2
  exit 1
}

version=$(sed -n 's/^cargo-lambda==\([0-9.]*\).*/\1/p' requirements-dev.txt)
[ -n "$version" ] || fail "cargo-lambda is not pinned in requirements-dev.txt"
[ ! -x .venv/bin/cargo-lambda ] || export PATH="$PWD/.venv/bin:$PATH"
if ! cargo lambda --version 2>/dev/null | grep -qF "$version"; then
  python3 -m pip install --quiet --disable-pip-version-check "cargo-lambda==$version"
fi
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
  rustup target add aarch64-unknown-linux-gnu

# The deployed zips carry the AWS adapters only (no local mode, no SQLite).
cargo lambda build --release --arm64 --output-format zip -p runtime-lambda --no-default-features

for name in queue2bucket-api queue2bucket-worker; do
  zip=target/lambda/$name/bootstrap.zip
  [ -f "$zip" ] || fail "$zip was not built"
  # ELF header: e_machine (bytes 18-19, little-endian) is 0xb7 for aarch64.
  machine=$(unzip -p "$zip" bootstrap | head -c 20 | od -An -tx1 -j18 -N2 | tr -d ' \n')
  [ "$machine" = b700 ] || fail "$zip: bootstrap is not an aarch64 executable (e_machine $machine)"
  unzip -Z "$zip" bootstrap | grep -q '^-rwx' || fail "$zip: bootstrap is not executable"
  echo "lambda-arm64: $zip: $(stat -c %s "$zip") bytes, aarch64"
done
git rev-parse HEAD >target/lambda/commit
