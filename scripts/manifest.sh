#!/usr/bin/env bash
# Prints, as one JSON document, what each component reads from the
# environment and which AWS actions it calls: the union of what each binary
# says of itself (`queue2bucket manifest` for the two ECS services,
# `queue2bucket-api manifest` and `queue2bucket-worker manifest` for the
# Lambda functions). The Terraform checks compare the infrastructure with it.
#   scripts/manifest.sh [BIN_DIR]     default: target/debug
set -euo pipefail
bin_dir=${1:-target/debug}
for name in queue2bucket queue2bucket-api queue2bucket-worker; do
  [ -x "$bin_dir/$name" ] || {
    echo "manifest: $bin_dir/$name not found; run 'cargo build --workspace --bins' first" >&2
    exit 1
  }
done
python3 - "$bin_dir" <<'PY'
import json, subprocess, sys

bin_dir = sys.argv[1]
merged = {}
for name in ("queue2bucket", "queue2bucket-api", "queue2bucket-worker"):
    part = json.loads(subprocess.run([f"{bin_dir}/{name}", "manifest"], check=True,
                                     capture_output=True, text=True).stdout)
    components = merged.setdefault("components", {})
    for key, value in part.items():
        if key == "components":
            clash = set(components) & set(value)
            if clash:
                sys.exit(f"manifest: {name} describes {sorted(clash)} again")
            components.update(value)
        else:
            merged[key] = value
print(json.dumps(merged, indent=2, sort_keys=True))
PY
