#!/usr/bin/env bash
# Property-based tests of the API against its own OpenAPI document: starts the
# local mode (`queue2bucket dev`) on a free loopback port with a throwaway data
# directory, runs schemathesis (installed into ./.venv by scripts/setup.sh)
# with every check for a bounded number of cases per operation, then checks
# that the server is still healthy and never panicked.
#   Q2B_BIN               the binary to run (default target/debug/queue2bucket)
#   SCHEMATHESIS_EXAMPLES cases per operation and phase (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${Q2B_BIN:-target/debug/queue2bucket}
examples=${SCHEMATHESIS_EXAMPLES:-200}
[ -x "$bin" ] || { echo "schemathesis: $bin is missing; run cargo build --bins" >&2; exit 1; }
[ -x .venv/bin/schemathesis ] || { echo "schemathesis: .venv/bin/schemathesis is missing; run scripts/setup.sh" >&2; exit 1; }

mkdir -p .tmp
dir=$(mktemp -d .tmp/schemathesis.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token="schemathesis-$RANDOM$RANDOM"

"$bin" dev --port "$port" --data-dir "$dir/data" --token "$token" >"$dir/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap cleanup EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 100); do
  curl -fsS "$base/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

SCHEMATHESIS_TOKEN=$token SCHEMATHESIS_HOOKS=integration/schemathesis/hooks.py \
  .venv/bin/schemathesis run "$base/openapi.json" \
  --checks all --max-examples "$examples" --no-color --warnings off

curl -fsS "$base/" >/dev/null || { echo "schemathesis: the server stopped answering" >&2; cat "$dir/server.log" >&2; exit 1; }
if grep -q "panicked" "$dir/server.log"; then
  echo "schemathesis: the server panicked" >&2
  grep -n "panicked" "$dir/server.log" >&2
  exit 1
fi
kill -TERM "$server"
wait "$server" || { echo "schemathesis: the server did not stop cleanly" >&2; exit 1; }
trap - EXIT
stored=$(find "$dir/data" -name '*.json' -path '*emails*' | wc -l)
echo "schemathesis: passed; server healthy, no panic, $stored accepted emails stored"
rm -rf "$dir"
