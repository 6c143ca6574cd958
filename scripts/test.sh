#!/usr/bin/env bash
# The one command that passes all the tests, locally and in CI:
#   formatting, lints, unit tests, the black-box tests against moto on
#   loopback (pipeline, contract, conformance, faults, hostile input), the
#   pipeline suite again against the static musl binary of the image, a
#   schemathesis run, a bounded fuzzing run of the parser, the offline checks of terraform/, the workflows and the
#   Dockerfile, and the deploy rehearsal (terraform/ applied to moto, the binaries run on what it created).
#   It installs what it needs into ./.venv first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "setup (./.venv: moto, linters, schemathesis; cargo-fuzz)"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build"
cargo build --workspace --bins --locked

step "cargo test (unit + integration against moto)"
cargo test --workspace --locked

step "static binary: queue2bucket as the image carries it (musl, cargo-zigbuild), the moto pipeline suite against it"
scripts/static-binary.sh --profile dev

step "schemathesis: the API against its OpenAPI document"
Q2B_BIN=target/debug/queue2bucket scripts/schemathesis.sh

step "fuzz: the request parser for ${FUZZ_SECONDS:-60} s"
scripts/fuzz.sh

step "terraform: fmt, validate, checkov, consistency with the binaries"
Q2B_BIN_DIR=target/debug scripts/check-terraform.sh

step "workflows and Dockerfile: actionlint (with shellcheck), zizmor, hadolint, structure"
scripts/check-workflows.sh

step "deploy rehearsal: terraform/ on moto, both hostings, the product run on what it created"
Q2B_BIN_DIR=target/debug scripts/rehearse.sh

printf '\nAll checks passed in %ss.\n' "$((SECONDS - started))"
