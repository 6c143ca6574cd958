#!/usr/bin/env bash
# Builds the two Lambda functions for both architectures Lambda runs
# (provided.al2023), cross-compiled and linked with zig by the cargo-lambda of
# requirements-dev.txt:
#
#   target/lambda/arm64/queue2bucket-{api,worker}/bootstrap.zip    (Graviton)
#   target/lambda/x86_64/queue2bucket-{api,worker}/bootstrap.zip
#
# Terraform's `architecture` variable picks the pair: the functions are
# created from target/lambda/<architecture>/ (lambda_api_zip and
# lambda_worker_zip default to it), and the deploy updates them from it
# (`scripts/deploy.sh lambda target/lambda/<architecture>`).
#
#   scripts/lambda-arm64.sh                 both architectures
#   scripts/lambda-arm64.sh arm64           one of arm64, x86_64
#
# Checks that each zip holds an executable `bootstrap` for its machine that
# asks for no glibc newer than AL2023's 2.34, prints each zip's size, and
# writes the commit they were built from to target/lambda/commit. Run by CI on
# every pull request and push (the Release workflow deploys the zips of main)
# and by the Terraform workflow before an apply that may create the functions.
# The name is historical: it built the arm64 pair only.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "lambda-arm64: $*" >&2
  exit 1
}

archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(arm64 x86_64)
for arch in "${archs[@]}"; do
  case $arch in
    arm64 | x86_64) ;;
    *) fail "unknown architecture '$arch' (arm64 or x86_64)" ;;
  esac
done

version=$(sed -n 's/^cargo-lambda==\([0-9.]*\).*/\1/p' requirements-dev.txt)
[ -n "$version" ] || fail "cargo-lambda is not pinned in requirements-dev.txt"
[ ! -x .venv/bin/cargo-lambda ] || export PATH="$PWD/.venv/bin:$PATH"
if ! cargo lambda --version 2>/dev/null | grep -qF "$version"; then
  python3 -m pip install --quiet --disable-pip-version-check "cargo-lambda==$version"
fi

# The deployed zips carry the AWS adapters only (no local mode, no SQLite).
for arch in "${archs[@]}"; do
  case $arch in
    arm64)
      rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
        rustup target add aarch64-unknown-linux-gnu
      cargo lambda build --profile lambda --arm64 --output-format zip --lambda-dir target/lambda/arm64 \
        -p runtime-lambda --no-default-features
      ;;
    x86_64)
      rustup target list --installed | grep -qx x86_64-unknown-linux-gnu ||
        rustup target add x86_64-unknown-linux-gnu
      cargo lambda build --profile lambda --x86-64 --output-format zip --lambda-dir target/lambda/x86_64 \
        -p runtime-lambda --no-default-features
      ;;
  esac
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for arch in "${archs[@]}"; do
  case $arch in
    arm64) machine_want=b700 ;;  # ELF e_machine (bytes 18-19, little-endian): EM_AARCH64
    x86_64) machine_want=3e00 ;; # EM_X86_64
  esac
  for name in queue2bucket-api queue2bucket-worker; do
    zip=target/lambda/$arch/$name/bootstrap.zip
    [ -f "$zip" ] || fail "$zip was not built"
    # Unpacked to a file: reading the pipe's first bytes only would stop unzip with SIGPIPE.
    unzip -p "$zip" bootstrap >"$tmp/bootstrap"
    machine=$(od -An -tx1 -j18 -N2 "$tmp/bootstrap" | tr -d ' \n')
    [ "$machine" = "$machine_want" ] || fail "$zip: bootstrap is not an $arch executable (e_machine $machine)"
    unzip -Z "$zip" bootstrap | grep -q '^-rwx' || fail "$zip: bootstrap is not executable"
    # The newest glibc symbol version it asks for (none if it links no glibc).
    glibc=$({ grep -aoE 'GLIBC_2\.[0-9]+' "$tmp/bootstrap" || true; } | sort -uV | tail -n 1)
    if [ -n "$glibc" ] && [ "$(printf '%s\n' "$glibc" GLIBC_2.34 | sort -V | tail -n 1)" != GLIBC_2.34 ]; then
      fail "$zip: bootstrap needs $glibc; provided.al2023 has glibc 2.34"
    fi
    echo "lambda-arm64: $zip: $(stat -c %s "$zip") bytes, $arch${glibc:+, needs $glibc at most}"
  done
done

git rev-parse HEAD >target/lambda/commit
