#!/usr/bin/env bash
# Builds `queue2bucket` as the container image carries it: fully static
# (musl), the AWS adapters only, cross-linked with zig through cargo-zigbuild
# (requirements-dev.txt), with the Dockerfile's command (release profile,
# unless --profile dev). Checks that the result is a static executable of the right
# architecture, prints its size, and (for the machine's own architecture)
# runs the moto end-to-end suite against it: tests/pipeline.rs with
# Q2B_BIN_DIR pointing at the static binary, its AWS endpoint given as
# `localhost` so that the static binary's own resolver is used.
#
#   scripts/static-binary.sh                 x86_64, build + end-to-end tests
#   scripts/static-binary.sh --arch aarch64  build and check only
#   scripts/static-binary.sh --no-test       build and check only
#   scripts/static-binary.sh --profile dev   unoptimised, as scripts/test.sh
#                                            runs it: the same static linking,
#                                            libc, resolver, TLS and CA path,
#                                            in half the build time
#
# Output: target/<arch>-unknown-linux-musl/{release,debug}/queue2bucket
set -euo pipefail
cd "$(dirname "$0")/.."

arch=x86_64
run_tests=1
profile=release
while [ $# -gt 0 ]; do
  case $1 in
    --arch) arch=$2; shift 2 ;;
    --no-test) run_tests=0; shift ;;
    --profile) profile=$2; shift 2 ;;
    *) echo "static-binary: unknown argument $1" >&2; exit 2 ;;
  esac
done
fail() {
  echo "static-binary: $*" >&2
  exit 1
}
case $arch in
  x86_64) machine=3e00 ;;
  aarch64) machine=b700 ;;
  *) fail "--arch is x86_64 or aarch64, not $arch" ;;
esac
target=$arch-unknown-linux-musl
case $profile in
  release) out=release ;;
  dev) out=debug ;;
  *) fail "--profile is release or dev, not $profile" ;;
esac

[ -x .venv/bin/cargo-zigbuild ] || scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

cargo zigbuild --profile "$profile" --locked -p runtime-fargate --no-default-features \
  --bin queue2bucket --target "$target"

bin=target/$target/$out/queue2bucket
[ -x "$bin" ] || fail "$bin was not built"
# ELF: e_machine (bytes 18-19) names the architecture; a static executable
# has no program interpreter (no PT_INTERP, so no `.interp` section).
got=$(head -c 20 "$bin" | od -An -tx1 -j18 -N2 | tr -d ' \n')
[ "$got" = "$machine" ] || fail "$bin is not an $arch executable (e_machine $got)"
if grep -qa -m1 'ld-linux\|ld-musl' <(head -c 4096 "$bin"); then
  fail "$bin asks for a dynamic loader; it is not static"
fi
echo "static-binary: $bin: $(stat -c %s "$bin") bytes, static, $arch"

if [ "$run_tests" = 1 ] && [ "$arch" = "$(uname -m)" ]; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  cp "$bin" "$dir/queue2bucket"
  echo "static-binary: the moto end-to-end suite against $bin"
  Q2B_BIN_DIR=$dir Q2B_ENDPOINT_HOST=localhost cargo test --locked -p integration --test pipeline
fi
