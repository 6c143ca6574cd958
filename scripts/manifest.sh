#!/usr/bin/env bash
# Prints, as one JSON document, what each component reads from the
# environment and which AWS actions it calls: the union of what each binary
# says of itself (`queue2bucket manifest` for the two ECS services,
# `queue2bucket-api manifest` and `queue2bucket-worker manifest` for the
# Lambda functions). The Terraform checks compare the infrastructure with it.
#
# For each component it adds env.values: the values each setting with a
# fixed set of them accepts (S3_KEY_LAYOUT: time, hashed; LOG_FORMAT; ...),
# as the binary itself answers when given one it does not accept ("[possible
# values: ...]"), with none of its required settings, so that it never
# starts. A binary whose manifest lists env.values already is not asked.
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
import json, re, subprocess, sys

bin_dir = sys.argv[1]
PROBE = "q2b-manifest-probe-not-a-value"
POSSIBLE = re.compile(r"^error: invalid value '" + re.escape(PROBE) + r"' for [^\n]*\n\s*\[possible values: ([^\]]*)\]",
                      re.M)


def accepted_values(argv, env):
    """The values each optional setting with a fixed set of them accepts."""
    if not env.get("required"):
        sys.exit(f"manifest: {' '.join(argv)} requires no setting, so asking it for accepted values would start it")
    values = {}
    for name in env.get("optional", []):
        try:
            run = subprocess.run(argv, env={"PATH": "/usr/bin:/bin", name: PROBE}, capture_output=True, text=True,
                                 timeout=30)
        except subprocess.TimeoutExpired:
            sys.exit(f"manifest: {' '.join(argv)} with {name}={PROBE} and no required setting did not exit")
        if run.returncode == 0:
            sys.exit(f"manifest: {' '.join(argv)} started with {name}={PROBE} and no required setting")
        m = POSSIBLE.search(run.stderr)
        if m:
            values[name] = [v.strip() for v in m.group(1).split(",")]
    return values


merged = {}
for name in ("queue2bucket", "queue2bucket-api", "queue2bucket-worker"):
    binary = f"{bin_dir}/{name}"
    part = json.loads(subprocess.run([binary, "manifest"], check=True,
                                     capture_output=True, text=True).stdout)
    components = merged.setdefault("components", {})
    for key, value in part.items():
        if key == "components":
            clash = set(components) & set(value)
            if clash:
                sys.exit(f"manifest: {name} describes {sorted(clash)} again")
            for component, spec in value.items():
                # queue2bucket serves its components as subcommands; the
                # Lambda binaries serve one each.
                argv = [binary, component] if name == "queue2bucket" else [binary]
                if "values" not in spec["env"]:
                    spec["env"]["values"] = accepted_values(argv, spec["env"])
            components.update(value)
        else:
            merged[key] = value
print(json.dumps(merged, indent=2, sort_keys=True))
PY
