#!/usr/bin/env bash
# Installs what the test command needs: a Python virtualenv at ./.venv with
# the pinned tools of requirements-dev.txt, and cargo-fuzz into ~/.cargo/bin.
# Idempotent and quick when nothing changed, so scripts/test.sh calls it
# every time.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
stamp="$venv/.requirements.sha256"
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing requirements-dev.txt into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$want" >"$stamp"
fi

# cargo-fuzz drives the parser's fuzz target (scripts/fuzz.sh).
fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -qF "$fuzz_version"; then
  echo "setup: installing cargo-fuzz $fuzz_version"
  cargo install --quiet --locked cargo-fuzz --version "$fuzz_version"
fi

command -v terraform >/dev/null || echo "setup: warning: 'terraform' is not on PATH; its checks and the rehearsal will fail" >&2
# The deploy rehearsal (scripts/rehearse.sh) drives these as the workflows do.
for tool in aws jq curl openssl; do
  command -v "$tool" >/dev/null || echo "setup: warning: '$tool' is not on PATH; scripts/rehearse.sh needs it" >&2
done
