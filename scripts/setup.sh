#!/usr/bin/env bash
# Installs what the test command needs into the project: a Python virtualenv at
# ./.venv with the pinned tools of requirements-dev.txt. Idempotent and quick
# when nothing changed, so scripts/test.sh calls it every time.
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

for tool in terraform; do
  command -v "$tool" >/dev/null || echo "setup: warning: '$tool' is not on PATH; its checks will fail" >&2
done
command -v shellcheck >/dev/null || echo "setup: note: shellcheck is not installed; actionlint skips shell checks (apt-get install shellcheck)" >&2
