#!/usr/bin/env bash
# Fuzzes the request parser and validator (handlers/fuzz, target `submission`:
# any bytes as a POST /email body) for a bounded time, starting from the
# corpus kept in handlers/fuzz/corpus/submission. A crash or a broken property
# fails the run and leaves the input under handlers/fuzz/artifacts/.
#   FUZZ_SECONDS  how long to fuzz (default 60)
#   FUZZ_GROW=1   add the new interesting inputs to the kept corpus (then
#                 minimize it with `cargo fuzz cmin submission --sanitizer none`)
# Needs cargo-fuzz (scripts/setup.sh installs it). Runs on stable Rust: the
# target is built without a sanitizer, so only the parser's own assertions
# and panics count, which is what this target checks.
set -euo pipefail
cd "$(dirname "$0")/../handlers"

seconds=${FUZZ_SECONDS:-60}
corpus=fuzz/corpus/submission
if [ "${FUZZ_GROW:-0}" = 1 ]; then
  dirs=("$corpus")
else
  # libFuzzer writes new inputs into the first directory: keep the repo's
  # corpus unchanged by giving it a scratch one first.
  mkdir -p ../.tmp
  scratch=$(mktemp -d ../.tmp/fuzz-corpus.XXXXXX)
  trap 'rm -rf "$scratch"' EXIT
  dirs=("$scratch" "$corpus")
fi

cargo fuzz run submission --sanitizer none "${dirs[@]}" -- \
  -max_total_time="$seconds" -max_len=8192 -timeout=10 -print_final_stats=1
