#!/usr/bin/env python3
"""Benchmarks of Queue2Bucket on this machine; run through scripts/bench.sh.

Measures, in one run (BENCH_PARTS=stub,local,moto,metrics,large selects parts):
  stub   The API's own cost: the release binary against an instant-answer AWS
         stub on loopback, with wrk at 1, 10, 50 and 100 connections, next to
         a bare axum handler returning a constant JSON body; the worker
         draining a 10,000-message backlog held by the stub.
  local  The local mode (`queue2bucket dev`): the API at the same levels, then
         a SIGKILL and a restart, after which the files must equal the 200s;
         POST -> file latency; the worker draining a 10,000-message backlog.
  moto   The real protocol: API requests/s with 1 and 10 clients next to
         moto's own direct SendMessage rate; a 500-message backlog drained by
         the worker next to a trivial receive -> put -> delete consumer; POST
         -> object visible in S3 with an idle worker. Every message is checked
         to be stored exactly once.

Reports requests/s, p50/p99/p99.9, messages/s, the peak RSS of each of our
processes and, on the stub, the CPU time each process spends per request;
checks them against the targets, and writes bench/results.json,
bench/results.md (Markdown tables) and bench/chart.svg.
"""

import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
Q2B = TARGET / "queue2bucket"
BENCH = TARGET / "q2b-bench"
VENV_BIN = ROOT / ".venv" / "bin"
DURATION = os.environ.get("BENCH_DURATION", "10s")
# wrk runs per level on the stub, bare and API interleaved: one noisy second
# on a shared machine moves a single run's p99 several-fold.
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
CONCURRENCY = (1, 10, 50, 100)       # wrk connections, stub and local mode
MOTO_CONCURRENCY = (1, 10)           # clients against moto (it serves ~100/s)
BACKLOG = 10_000                     # messages for the worker, stub and local
# RUNTIME_THREADS of the API and the worker on the stub: 1, as Terraform sets
# it on tasks under 2 vCPUs (the default), and 2, a thread per CPU here.
API_THREADS = {"stub": "1", "stub, 2 threads": "2"}
TOKEN = "bench-token"
DATA = ('{"email_subject":"Hello","email_sender":"alice@example.com",'
        '"email_timestream":"1732780800","email_content":"Hi Bob"}')
BODY = json.dumps({"data": json.loads(DATA), "token": TOKEN}, separators=(",", ":"))

WRK_SCRIPT = r"""
wrk.method = "POST"
local file = os.getenv("BENCH_BODY_FILE")
if file then
  local f = io.open(file, "rb")
  wrk.body = f:read("*a")
  f:close()
else
  wrk.body = os.getenv("BENCH_BODY")
end
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""

children = []


def object_file(email_id):
    """The file name an email is stored under: <unix-seconds>-<id>.json, the
    seconds from the UUIDv7's first 48 bits (Unix milliseconds)."""
    millis = int(email_id.replace("-", "")[:12], 16)
    return f"{millis // 1000}-{email_id}.json"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, env=None, name=None, stdout=None):
    full_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}
    full_env.update(env or {})
    p = subprocess.Popen([str(a) for a in args], env=full_env,
                         stdout=stdout or subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p.bench_name = name or Path(str(args[0])).name
    children.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def peak_rss_mb(p):
    """Peak resident set size of a running process, in MB (VmHWM)."""
    with open(f"/proc/{p.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def log_lines(path):
    with open(path) as f:
        for line in f:
            try:
                yield json.loads(line)
            except ValueError:
                pass


def stored_lines(path):
    return sum(1 for l in log_lines(path) if l.get("outcome") == "stored")


def last_log_time(path):
    """Unix time of the last "stored" line of a worker's JSON log."""
    from datetime import datetime
    stamps = [l["timestamp"] for l in log_lines(path) if l.get("outcome") == "stored"]
    return datetime.fromisoformat(stamps[-1].replace("Z", "+00:00")).timestamp()


def wait_http(url, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def get_json(url):
    return json.loads(urllib.request.urlopen(url, timeout=5).read())


def cpu_s(p):
    """CPU time (user + system) a running process has used so far, seconds."""
    with open(f"/proc/{p.pid}/stat") as f:
        # Fields after the command name, which may contain spaces.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s():
    """CPU time of the children that have exited so far, seconds."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wrk(url, connections, script, body_file=None):
    client_before = children_cpu_s()
    env = {**os.environ, "BENCH_BODY": BODY}
    if body_file:
        env["BENCH_BODY_FILE"] = str(body_file)
    out = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{DURATION}", "--timeout", "5s",
         "-s", script, url],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    secs = r["duration_us"] / 1e6
    return {
        "client_cpu_s": children_cpu_s() - client_before,
        "rps": r["requests"] / secs,
        "requests": r["requests"],
        "non2xx": r["non2xx"],
        "socket_errors": r["socket_errors"],
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "p999_ms": r["p999_us"] / 1000,
    }


def median_of(samples):
    """Per-field median of repeated runs; counts are summed."""
    out = {k: (sum if k in ("requests", "non2xx", "socket_errors") else statistics.median)(
        [s[k] for s in samples]) for k in samples[0]}
    out["repeats"] = len(samples)
    return out


def run_json(*args):
    """Runs a helper that prints its result as a JSON line; that result."""
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def aws_env(endpoint):
    return {
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
        "RUST_LOG": "warn",
    }


def start_api(endpoint, queue_url, param="/bench/token", extra=None, binary=None):
    port = free_port()
    env = aws_env(endpoint) | {"SQS_QUEUE_URL": queue_url, "TOKEN_PARAM_NAME": param,
                               "PORT": str(port)} | (extra or {})
    p = start([binary or Q2B, "api"], env)
    wait_http(f"http://127.0.0.1:{port}/")
    return p, f"http://127.0.0.1:{port}"


def drain_stub_backlog(stub_port, count, binary=None, stub_args=(), extra=None):
    """Starts a stub holding `count` messages and a worker on it; waits until
    all are deleted. Answers the stub's final stats, the seconds from first
    receive to last delete, the worker's CPU seconds and its peak RSS."""
    stub = start([BENCH, "stub", "--port", stub_port, "--token", TOKEN,
                  "--backlog", count, *stub_args], name="stub")
    stub_url = f"http://127.0.0.1:{stub_port}"
    wait_http(f"{stub_url}/stats")
    env = aws_env(stub_url) | {"SQS_QUEUE_URL": f"{stub_url}/123456789012/bench",
                               "S3_BUCKET_NAME": "bench"} | (extra or {})
    worker = start([binary or Q2B, "worker"], env)
    t0 = time.time()
    while get_json(f"{stub_url}/stats")["deleted"] < count:
        if time.time() - t0 > 300:
            raise SystemExit("the worker did not drain the stub's backlog in 5 minutes")
        time.sleep(0.1)
    stats = get_json(f"{stub_url}/stats")
    seconds = stats["last_delete_s"] - stats["first_receive_s"]
    cpu, rss = cpu_s(worker), peak_rss_mb(worker)
    stop(worker)
    stop(stub)
    return stats, seconds, cpu, rss


def bench_stub(results, script):
    """Our own cost: the API and the worker against the instant-answer stub,
    the API next to a bare axum handler at the same concurrency levels."""
    stub_port, bare_port = free_port(), free_port()
    stub = start([BENCH, "stub", "--port", stub_port, "--token", TOKEN], name="stub")
    bare = start([BENCH, "bare", "--port", bare_port], name="bare")
    stub_url = f"http://127.0.0.1:{stub_port}"
    wait_http(f"{stub_url}/stats")
    wait_http(f"http://127.0.0.1:{bare_port}/")
    # The API as Terraform runs it on a task under 2 vCPUs (RUNTIME_THREADS=1),
    # and with a thread per CPU of this machine, tokio's default.
    apis = {key: start_api(stub_url, f"{stub_url}/123456789012/bench",
                           extra={"RUNTIME_THREADS": threads})
            for key, threads in API_THREADS.items()}
    # Warm up: token read, connections open.
    for _, url in apis.values():
        wrk(f"{url}/email", 10, script)
    sent_before = get_json(f"{stub_url}/stats")["sent"]
    runs = {"bare": {}} | {key: {} for key in apis}
    # CPU per request of each process, by connections: where the time goes.
    cpu = {"bare": {}} | {key: {} for key in apis}
    for c in CONCURRENCY:
        # The thread comparison where the batches fill: 10 and 50 connections.
        measured = [key for key in apis if key == "stub" or c in (10, 50)]
        samples = {key: [] for key in ["bare", *measured]}
        cpu_samples = {key: [] for key in ["bare", *measured]}
        for _ in range(REPEATS):
            before = cpu_s(bare)
            r = wrk(f"http://127.0.0.1:{bare_port}/email", c, script)
            samples["bare"].append(r)
            cpu_samples["bare"].append({"server_us": (cpu_s(bare) - before) / r["requests"] * 1e6,
                                        "wrk_us": r["client_cpu_s"] / r["requests"] * 1e6})
            for key in measured:
                api, api_url = apis[key]
                before, stub_before = (cpu_s(api), cpu_s(stub)), get_json(f"{stub_url}/stats")
                r = wrk(f"{api_url}/email", c, script)
                samples[key].append(r)
                stats = get_json(f"{stub_url}/stats")
                calls = max(stats["send_calls"] - stub_before["send_calls"], 1)
                stub_cpu = cpu_s(stub) - before[1]
                cpu_samples[key].append({
                    "server_us": (cpu_s(api) - before[0]) / r["requests"] * 1e6,
                    "wrk_us": r["client_cpu_s"] / r["requests"] * 1e6,
                    "stub_us": stub_cpu / r["requests"] * 1e6,
                    "stub_us_per_call": stub_cpu / calls * 1e6,
                    "messages_per_call": (stats["sent"] - stub_before["sent"]) / calls})
        for key in samples:
            runs[key][c], cpu[key][c] = median_of(samples[key]), median_of(cpu_samples[key])
    accepted = sum(r["requests"] - r["non2xx"] for key in apis for r in runs[key].values())
    sent = get_json(f"{stub_url}/stats")["sent"] - sent_before
    # The AWS SDK alone: one SendMessage per message straight to the stub, no
    # HTTP server in front. What one SQS round trip costs here.
    runs["sdk"] = {}
    for c in (1, 10):
        client_before, stub_before = children_cpu_s(), cpu_s(stub)
        r = run_json(BENCH, "moto-send", "--endpoint", stub_url, "--queue-url",
                     f"{stub_url}/123456789012/bench", "--count", 10000, "--concurrency", c)
        runs["sdk"][c] = {"rps": r["per_second"]}
        cpu.setdefault("sdk", {})[c] = {
            "client_us_per_call": (children_cpu_s() - client_before) / r["messages"] * 1e6,
            "stub_us_per_call": (cpu_s(stub) - stub_before) / r["messages"] * 1e6}
    results["api"].update(runs)
    results["cpu_us"] = cpu
    results["api_checks"]["stub"] = {
        "accepted": accepted, "sent_to_queue": sent,
        "non2xx": sum(r["non2xx"] for r in runs["stub"].values()),
        # wrk stops counting at its deadline, so a request in flight then may
        # be sent without being counted: sent >= accepted, by at most c.
        "ok": accepted <= sent <= accepted + max(CONCURRENCY) * len(CONCURRENCY) * REPEATS * len(apis),
    }
    results["rss_mb"]["api (stub)"] = peak_rss_mb(apis["stub"][0])
    results["rss_mb"]["bare axum"] = peak_rss_mb(bare)
    for api, _ in apis.values():
        stop(api)
    stop(bare)
    stop(stub)

    # Worker against a backlog held by the stub, as for the API.
    for key, threads in API_THREADS.items():
        stats, seconds, worker_cpu, rss = drain_stub_backlog(stub_port, BACKLOG,
                                                             extra={"RUNTIME_THREADS": threads})
        results["worker"][key] = {
            "messages": BACKLOG, "seconds": seconds, "per_second": BACKLOG / seconds,
            "objects": stats["objects"], "puts": stats["put"], "deleted": stats["deleted"],
            "cpu_us": worker_cpu / BACKLOG * 1e6,
        }
        if key == "stub":
            results["rss_mb"]["worker (stub)"] = rss


STATIC = ROOT / "target" / "x86_64-unknown-linux-musl" / "release" / "queue2bucket"


def bench_static(results, script):
    """The container image's static musl binary (scripts/static-binary.sh)
    against the glibc build: the API on the stub at 10 and 50 connections,
    both running, measured in alternating order, medians of at least 6 runs;
    CPU per request; then the worker draining the stub's backlog with each,
    CPU per message."""
    if not STATIC.exists():
        raise SystemExit(f"{STATIC} is missing: run scripts/static-binary.sh --no-test first")
    builds = {"glibc": Q2B, "musl (static)": STATIC}
    out = results["static"] = {"api": {}, "worker": {}, "size_bytes": {
        k: Path(v).stat().st_size for k, v in builds.items()}}
    stub_port = free_port()
    stub = start([BENCH, "stub", "--port", stub_port, "--token", TOKEN], name="stub")
    stub_url = f"http://127.0.0.1:{stub_port}"
    wait_http(f"{stub_url}/stats")
    queue = f"{stub_url}/123456789012/bench"
    apis = {k: start_api(stub_url, queue, binary=v) for k, v in builds.items()}
    for _, url in apis.values():
        wrk(f"{url}/email", 10, script)
    names = list(builds)
    for connections in (10, 50):
        samples = {k: [] for k in names}
        cpu_us = {k: [] for k in names}
        for i in range(max(REPEATS, 6)):
            for key in (names if i % 2 == 0 else names[::-1]):
                process, url = apis[key]
                before = cpu_s(process)
                r = wrk(f"{url}/email", connections, script)
                samples[key].append(r)
                cpu_us[key].append((cpu_s(process) - before) / max(r["requests"], 1) * 1e6)
        out["api"][connections] = {k: median_of(samples[k]) | {
            "cpu_us": statistics.median(cpu_us[k])} for k in names}
    for key in names:
        out["rss_mb"] = out.get("rss_mb", {}) | {f"api, {key}": peak_rss_mb(apis[key][0])}
        stop(apis[key][0])
    stop(stub)
    for key, binary in builds.items():
        _, seconds, cpu, rss = drain_stub_backlog(stub_port, BACKLOG, binary)
        out["worker"][key] = {"per_second": BACKLOG / seconds, "cpu_us": cpu / BACKLOG * 1e6}
        out["rss_mb"][f"worker, {key}"] = rss


def bench_metrics(results, script):
    """What the metrics cost the API: two APIs on one instant-answer stub, one
    writing EMF (every 10 s, to /dev/null here) and one with
    METRICS_FORMAT=off (no recorder at all), interleaved at 50 connections,
    in alternating order, medians of BENCH_REPEATS (at least 6) runs each,
    and the CPU time each spends per request."""
    stub_port = free_port()
    stub = start([BENCH, "stub", "--port", stub_port, "--token", TOKEN], name="stub")
    stub_url = f"http://127.0.0.1:{stub_port}"
    wait_http(f"{stub_url}/stats")
    queue = f"{stub_url}/123456789012/bench"
    on, on_url = start_api(stub_url, queue, extra={"METRICS_FORMAT": "emf"})
    off, off_url = start_api(stub_url, queue, extra={"METRICS_FORMAT": "off"})
    for url in (on_url, off_url):
        wrk(f"{url}/email", 10, script)
    samples = {"on": [], "off": []}
    cpu_us = {"on": [], "off": []}
    apis = {"on": (on, on_url), "off": (off, off_url)}
    # The order alternates: whichever runs first in a pair is measured on a
    # machine in a different state (measured: two identical APIs differ by
    # 10-25 % run to run when one always goes first).
    for i in range(max(REPEATS, 6)):
        for key in (("on", "off") if i % 2 == 0 else ("off", "on")):
            process, url = apis[key]
            before = cpu_s(process)
            r = wrk(f"{url}/email", 50, script)
            samples[key].append(r)
            cpu_us[key].append((cpu_s(process) - before) / max(r["requests"], 1) * 1e6)
    stop(on)
    stop(off)
    stop(stub)
    on_r, off_r = median_of(samples["on"]), median_of(samples["off"])
    cpu = {k: statistics.median(v) for k, v in cpu_us.items()}
    results["metrics_cost"] = {"on": on_r, "off": off_r, "ratio": on_r["rps"] / off_r["rps"],
                               "cpu_us": cpu, "runs": len(samples["on"]),
                               "date": time.strftime("%Y-%m-%d")}


LARGE = {"1 MB (inline)": 1_000_000, "5 MB (claim check)": 5_000_000}


def large_body(path, size):
    """A request body of `size` bytes carrying a valid email."""
    data = json.loads(DATA)
    envelope = len(json.dumps({"data": data, "token": TOKEN}, separators=(",", ":")))
    data["email_content"] = "b" * (size - envelope + len(data["email_content"]))
    text = json.dumps({"data": data, "token": TOKEN}, separators=(",", ":"))
    assert len(text) == size
    path.write_text(text)
    return path


def bench_large(results, script):
    """Large emails: requests/s and MB/s for 1 MB emails (one queue message)
    and 5 MB ones (the claim check) through the API on the stub and in the
    local mode, and through the worker from a stub backlog of each; peak RSS
    of the API under 64 concurrent 5 MB uploads, against the budget."""
    out = results["large"] = {"api": {}, "worker": {}, "local": {}, "rss_mb": {}}
    tmp = Path(tempfile.mkdtemp(prefix="q2b-bench-large-"))
    bodies = {name: large_body(tmp / f"body-{size}.json", size) for name, size in LARGE.items()}

    stub_port = free_port()
    stub = start([BENCH, "stub", "--port", stub_port, "--token", TOKEN], name="stub")
    stub_url = f"http://127.0.0.1:{stub_port}"
    wait_http(f"{stub_url}/stats")
    api, api_url = start_api(stub_url, f"{stub_url}/123456789012/bench",
                             extra={"S3_BUCKET_NAME": "bench"})
    wrk(f"{api_url}/email", 1, script)
    time.sleep(1)  # the queue's limit read in the background
    for name, size in LARGE.items():
        r = wrk(f"{api_url}/email", 10, script, bodies[name])
        out["api"][name] = r | {"mb_per_s": r["rps"] * size / 1e6}
    budget = 64 * 1024 * 1024
    burst = wrk(f"{api_url}/email", 64, script, bodies["5 MB (claim check)"])
    out["rss_mb"]["api, 64 concurrent 5 MB uploads"] = peak_rss_mb(api)
    out["burst"] = {"rps": burst["rps"], "non2xx": burst["non2xx"], "requests": burst["requests"],
                    "budget_mb": budget / 2**20}
    stop(api)
    stop(stub)

    for name, size in LARGE.items():
        claims = size > 1_000_000
        stats, seconds, _, rss = drain_stub_backlog(
            stub_port, 500, stub_args=["--email-bytes", size] + (["--claims"] if claims else []))
        out["worker"][name] = {"messages": 500, "per_second": 500 / seconds,
                               "mb_per_s": stats["put_bytes"] / seconds / 1e6}
        out["rss_mb"][f"worker, {name} backlog"] = rss

    data = tmp / "local"
    port = free_port()
    dev = start([Q2B, "dev", "--port", port, "--data-dir", data, "--token", TOKEN], name="dev")
    wait_http(f"http://127.0.0.1:{port}/")
    for name, size in LARGE.items():
        r = wrk(f"http://127.0.0.1:{port}/email", 10, script, bodies[name])
        out["local"][name] = r | {"mb_per_s": r["rps"] * size / 1e6}
    out["rss_mb"]["dev, large emails"] = peak_rss_mb(dev)
    stop(dev)
    shutil.rmtree(tmp, ignore_errors=True)


def boto(endpoint):
    sys.path.insert(0, str(next((ROOT / ".venv" / "lib").glob("python*/site-packages"))))
    import boto3  # noqa: E402  (from the project's virtualenv)
    kw = dict(endpoint_url=endpoint, region_name="us-east-1",
              aws_access_key_id="test", aws_secret_access_key="test")
    return boto3.client("sqs", **kw), boto3.client("s3", **kw), boto3.client("ssm", **kw)


def depth(sqs, url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def count_keys(s3, bucket, prefix):
    n, token = 0, None
    while True:
        kw = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_objects_v2(**kw)
        n += page.get("KeyCount", 0)
        token = page.get("NextContinuationToken")
        if not token:
            return n


def worker_drain(endpoint, queue_url, prefix, count, sqs, s3):
    """Time for the worker to store `count` messages, read from its own log
    lines, so that measuring adds no calls to moto (whose every SQS call
    walks the whole queue)."""
    env = aws_env(endpoint) | {"SQS_QUEUE_URL": queue_url, "S3_BUCKET_NAME": "bench",
                               "S3_KEY_PREFIX": prefix, "POLL_INTERVAL": "1", "RUST_LOG": "info"}
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")
    t0 = time.time()
    worker = start([Q2B, "worker"], env, stdout=log)
    while stored_lines(log.name) < count:
        time.sleep(0.2)
        if time.time() - t0 > 300:
            raise SystemExit("the worker did not drain the queue in 5 minutes")
    elapsed = last_log_time(log.name) - t0
    rss = peak_rss_mb(worker)
    stop(worker)
    return {"messages": count, "seconds": elapsed, "per_second": count / elapsed,
            "stored": count_keys(s3, "bench", prefix), "left_on_queue": depth(sqs, queue_url),
            "peak_rss_mb": rss}


def bench_moto(results, count=500):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = start([VENV_BIN / "moto_server", "-H", "127.0.0.1", "-p", port], name="moto")
    wait_http(f"{endpoint}/moto-api/")
    sqs, s3, ssm = boto(endpoint)
    ssm.put_parameter(Name="/bench/token", Value=TOKEN, Type="SecureString")
    s3.create_bucket(Bucket="bench")
    m = {}

    def queue(name):
        return sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]

    # Sends: moto's own rate, then the API's, each into an empty queue.
    direct_q = queue("direct")
    m["direct_send"] = run_json(BENCH, "moto-send", "--endpoint", endpoint,
                                "--queue-url", direct_q, "--count", count, "--concurrency", 10)
    moto_api = {}
    for c in MOTO_CONCURRENCY:
        api_q = queue(f"api-c{c}")
        api, api_url = start_api(endpoint, api_q)
        r = run_json(BENCH, "post-load", "--api", api_url, "--token", TOKEN,
                     "--count", count, "--concurrency", c)
        r["rps"] = r["per_second"]
        r["queued"] = depth(sqs, api_q)
        r["lost"] = r["ok"] - r["queued"]
        moto_api[c] = r
        results["rss_mb"][f"api (moto, c{c})"] = peak_rss_mb(api)
        stop(api)
    m["api_send"] = moto_api[10]
    m["api_send"]["ratio"] = m["api_send"]["per_second"] / m["direct_send"]["per_second"]
    results["api"]["moto"] = moto_api

    # Drains, in alternating rounds (moto's speed drifts): a trivial
    # consumer and the worker, each on its own queue of `count` messages;
    # the best round of each is compared.
    trivial, worker_rounds = [], []
    for r in range(2):
        tq, wq = queue(f"trivial{r}"), queue(f"worker{r}")
        for q in (tq, wq):
            run_json(BENCH, "moto-send", "--endpoint", endpoint, "--queue-url", q,
                     "--count", count, "--concurrency", 10)
        trivial.append(run_json(BENCH, "moto-drain", "--endpoint", endpoint, "--queue-url",
                                tq, "--bucket", "bench", "--count", count))
        worker_rounds.append(worker_drain(endpoint, wq, f"round{r}/", count, sqs, s3))
    m["trivial_drain"] = max(trivial, key=lambda d: d["per_second"])
    m["worker_drain"] = max(worker_rounds, key=lambda d: d["per_second"])
    m["worker_drain"]["ratio"] = m["worker_drain"]["per_second"] / m["trivial_drain"]["per_second"]
    results["worker"]["moto"] = m["worker_drain"] | {"objects": m["worker_drain"]["stored"]}
    results["worker"]["moto (trivial consumer)"] = m["trivial_drain"]

    # POST -> object visible, idle worker with the default 10 s poll window.
    latency_q = queue("latency")
    api, api_url = start_api(endpoint, latency_q)
    env = aws_env(endpoint) | {"SQS_QUEUE_URL": latency_q, "S3_BUCKET_NAME": "bench"}
    worker = start([Q2B, "worker"], env)
    time.sleep(1)
    m["post_to_object"] = run_json(BENCH, "post-to-object", "--endpoint", endpoint, "--api",
                                   api_url, "--token", TOKEN, "--bucket", "bench",
                                   "--samples", 30)
    stop(worker)
    stop(api)
    stop(moto)
    results["moto"] = m


def count_files(directory):
    try:
        return sum(1 for e in os.scandir(directory) if e.name.endswith(".json"))
    except FileNotFoundError:
        return 0


def bench_local(results, script):
    """The local mode: one `queue2bucket dev` process, SQLite queue, files."""
    data = Path(tempfile.mkdtemp(prefix="q2b-bench-local-"))
    port = free_port()
    args = [Q2B, "dev", "--port", port, "--data-dir", data, "--token", TOKEN]
    url = f"http://127.0.0.1:{port}"
    bucket = data / "bucket" / "emails"
    dev = start(args, {"LOG_FORMAT": "text"})
    wait_http(f"{url}/")
    runs = {c: wrk(f"{url}/email", c, script) for c in CONCURRENCY}
    results["api"]["local"] = runs
    accepted = sum(r["requests"] - r["non2xx"] for r in runs.values())
    results["rss_mb"]["dev (API + worker, under load)"] = peak_rss_mb(dev)
    # Every accepted request must survive a SIGKILL right after the load.
    dev.kill()
    dev.wait()
    on_disk_at_kill = count_files(bucket)
    dev = start(args, {"LOG_FORMAT": "text"})
    wait_http(f"{url}/")
    t0 = time.time()
    while count_files(bucket) < accepted and time.time() - t0 < 300:
        time.sleep(0.5)
    # Let anything beyond `accepted` (requests in flight at wrk's deadline,
    # answered but not counted) land too before counting.
    time.sleep(1)
    files = count_files(bucket)
    results["api_checks"]["local"] = {
        "accepted": accepted, "files": files, "on_disk_at_kill": on_disk_at_kill,
        "drained_after_restart_s": time.time() - t0 - 1,
        "ok": accepted <= files <= accepted + sum(CONCURRENCY),
    }

    # POST -> file on disk, one email at a time, idle worker.
    latencies = []
    for _ in range(50):
        time.sleep(0.05)
        started = time.perf_counter()
        req = urllib.request.Request(f"{url}/email", data=BODY.encode(),
                                     headers={"content-type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=5).read())
        path = bucket / object_file(answer["id"])
        while not path.exists():
            if time.perf_counter() - started > 10:
                raise SystemExit("a posted email never reached the disk")
            time.sleep(0.0002)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    results["latency"]["local_post_to_file"] = {
        "samples": len(latencies), "p50_ms": latencies[len(latencies) // 2],
        "p90_ms": latencies[int(len(latencies) * 0.9)], "max_ms": latencies[-1]}
    stop(dev)
    shutil.rmtree(data, ignore_errors=True)

    # The worker of the local mode against a backlog put on its queue first.
    data = Path(tempfile.mkdtemp(prefix="q2b-bench-local-"))
    bucket = data / "bucket" / "emails"
    run_json(BENCH, "local-fill", "--data-dir", data, "--count", BACKLOG)
    started = time.time()
    dev = start([Q2B, "dev", "--port", free_port(), "--data-dir", data, "--token", TOKEN],
                {"LOG_FORMAT": "text"})
    while count_files(bucket) < BACKLOG:
        if time.time() - started > 300:
            raise SystemExit("the local worker did not drain its backlog in 5 minutes")
        time.sleep(0.2)
    last = max(e.stat().st_mtime for e in os.scandir(bucket))
    results["rss_mb"]["dev (draining a backlog)"] = peak_rss_mb(dev)
    stop(dev)
    seconds = last - started
    results["worker"]["local"] = {"messages": BACKLOG, "seconds": seconds,
                                  "per_second": BACKLOG / seconds,
                                  "objects": count_files(bucket)}
    shutil.rmtree(data, ignore_errors=True)


API_ROWS = [("bare", "bare axum handler (ceiling)"),
            ("sdk", "AWS SDK alone: SendMessage to the stub, no server"),
            ("stub", "API, instant-answer AWS stub"),
            ("stub, 2 threads", "API, stub, 2 runtime threads"),
            ("local", "API, local mode (`dev`)"), ("moto", "API, moto")]
WORKER_ROWS = [("stub", "worker, instant-answer AWS stub"),
               ("stub, 2 threads", "worker, stub, 2 runtime threads"), ("local", "worker, local mode (`dev`)"),
               ("moto", "worker, moto"), ("moto (trivial consumer)", "trivial consumer, moto")]


def fmt_api(r):
    if "p50_ms" not in r:
        return f'{r["rps"]:,.0f} calls/s'
    return (f'{r["rps"]:,.0f} req/s<br>p50 {r["p50_ms"]:.2f} · p99 {r["p99_ms"]:.2f} · '
            f'p99.9 {r["p999_ms"]:.2f} ms')


def ceiling(r, c):
    """The most the API could reach, as a share of the bare handler's
    requests/s at C connections, if everything it does beyond the bare
    handler cost no CPU except the SQS call: each request still carries a
    tenth of a SendMessageBatch call, in the SDK and in the stub. Optimistic
    on purpose (full batches; a lone SendMessage costs the SDK less than a
    batch), so the API cannot beat it while the bare run keeps the CPUs busy."""
    cpu = r["cpu_us"]
    http = cpu["bare"][c]["server_us"] + cpu["bare"][c]["wrk_us"]
    sqs = (cpu["sdk"][10]["client_us_per_call"] + cpu["stub"][c]["stub_us_per_call"]) / 10
    return http / (http + sqs)


def cpu_ratio(r, c, key="stub"):
    """The API's CPU per request over what serving it cannot avoid: the bare
    handler's CPU per request plus the AWS SDK's CPU per message when a
    SendMessage call (the SDK alone, 10 callers) is shared by as many
    messages as the API's batches held at C connections."""
    cpu = r["cpu_us"]
    sdk = cpu["sdk"][10]["client_us_per_call"] / cpu[key][c]["messages_per_call"]
    return cpu[key][c]["server_us"] / (cpu["bare"][c]["server_us"] + sdk)


def cpu_table(r):
    cpu = r["cpu_us"]
    levels = sorted(cpu["bare"], key=int)
    rows = [("bare axum handler", "bare", "server_us"), ("wrk, on the bare handler", "bare", "wrk_us"),
            ("API (`queue2bucket api`, 1 runtime thread)", "stub", "server_us"),
            ("API, 2 runtime threads", "stub, 2 threads", "server_us"),
            ("wrk, on the API", "stub", "wrk_us"),
            ("stub, on the API's calls", "stub", "stub_us")]
    out = ["", "### API: CPU time per request (stub runs)", "",
           "| process | " + " | ".join(f"{c} conn." for c in levels) + " |",
           "|---" * (len(levels) + 1) + "|"]
    for name, run, key in rows:
        if run in cpu:
            out.append(f"| {name} | " + " | ".join(
                f'{cpu[run][c][key]:.1f} µs' if c in cpu[run] else "–" for c in levels) + " |")
    out.append("| messages per SendMessageBatch call | "
               + " | ".join(f'{cpu["stub"][c]["messages_per_call"]:.1f}' for c in levels) + " |")
    out.append("| API ÷ (bare handler + SDK alone per message at that batch size) | "
               + " | ".join(f"{cpu_ratio(r, c):.2f}" if c >= 10 else "–" for c in levels) + " |")
    out.append("| ceiling for the API if its own work were free | "
               # Only a bound where the bare run keeps the CPUs busy.
               + " | ".join(f"{ceiling(r, c):.0%} of bare" if c >= 10 else "–" for c in levels)
               + " |")
    sdk = cpu["sdk"]
    out += ["", "One SendMessage call through the AWS SDK alone costs the calling process "
            f'{sdk[1]["client_us_per_call"]:.0f} µs of CPU at 1 connection and '
            f'{sdk[10]["client_us_per_call"]:.0f} µs at 10, and the stub '
            f'{sdk[10]["stub_us_per_call"]:.0f} µs to answer it.']
    return out


def check(ok):
    return "met" if ok else "**not met**"


def table(r):
    api, worker, rss = r["api"], r["worker"], r["rss_mb"]
    levels = sorted({c for runs in api.values() for c in runs}, key=int)
    out = ["### API: requests/s and latency by connections", "",
           "| backend | " + " | ".join(f"{c} conn." for c in levels) + " |",
           "|---" * (len(levels) + 1) + "|"]
    for key, name in API_ROWS:
        if key in api:
            cells = [fmt_api(api[key][c]) if c in api[key] else "–" for c in levels]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
    if "cpu_us" in r:
        out += cpu_table(r)
    out += ["", "### Worker: messages stored and deleted", "",
            "| backend | backlog | messages/s | CPU per message | objects |", "|---|---|---|---|---|"]
    for key, name in WORKER_ROWS:
        if key in worker:
            w = worker[key]
            objects = f'{w["objects"]:,}' if "objects" in w else "–"
            cpu = f'{w["cpu_us"]:.0f} µs' if "cpu_us" in w else "–"
            out.append(f'| {name} | {w["messages"]:,} | {w["per_second"]:,.0f} | {cpu} | {objects} |')
    out += ["", "### Peak RSS", "", "| process | MB |", "|---|---|"]
    out += [f"| {k} | {v:.1f} |" for k, v in rss.items()]

    checks = []
    if "stub" in api:
        s = api["stub"]
        for c in (10, 50):
            ratio = s[c]["rps"] / api["bare"][c]["rps"]
            checks.append((f"API vs bare axum, {c} connections", "≥ 50 %",
                           f"{ratio:.0%} (ceiling here {ceiling(r, c):.0%}, see CPU time)",
                           ratio >= 0.5))
        if "stub, 2 threads" in r["cpu_us"]:
            for c, limit in ((50, 1.5), (10, 2.0)):
                ratio = cpu_ratio(r, c)
                checks.append((f"API CPU per request ÷ (bare + SDK per message), {c} connections",
                               f"≤ {limit}", f'{ratio:.2f} ({r["cpu_us"]["stub"][c]["server_us"]:.1f} µs; '
                               f'2 runtime threads: {cpu_ratio(r, c, "stub, 2 threads"):.2f})',
                               ratio <= limit))
        checks.append(("API p99, 50 connections (stub)", "< 5 ms",
                       f'{s[50]["p99_ms"]:.2f} ms', s[50]["p99_ms"] < 5))
        checks.append(("API peak RSS (stub)", "< 25 MB", f'{rss["api (stub)"]:.1f} MB',
                       rss["api (stub)"] < 25))
        c = r["api_checks"]["stub"]
        checks.append(("API accepted = sent to the queue (stub)", "equal",
                       f'{c["accepted"]:,} accepted, {c["sent_to_queue"]:,} sent', c["ok"]))
    if "stub" in worker:
        w = worker["stub"]
        checks.append(("worker, stub backlog", "≥ 2,000 msg/s", f'{w["per_second"]:,.0f} msg/s',
                       w["per_second"] >= 2000))
        checks.append(("worker objects = messages (stub)", "equal",
                       f'{w["objects"]:,} / {w["messages"]:,}', w["objects"] == w["messages"]))
        if "cpu_us" in w and "stub, 2 threads" in worker:
            w2 = worker["stub, 2 threads"]
            checks.append(("worker CPU per message, 1 vs 2 runtime threads (stub)", "≤ 100 %",
                           f'{w["cpu_us"] / w2["cpu_us"]:.0%} ({w["cpu_us"]:.0f} vs {w2["cpu_us"]:.0f} µs)',
                           w["cpu_us"] <= w2["cpu_us"]))
    if "local" in api:
        l50 = api["local"][50]
        checks.append(("local mode, 50 connections", "≥ 5,000 req/s", f'{l50["rps"]:,.0f} req/s',
                       l50["rps"] >= 5000))
        lat = r["latency"]["local_post_to_file"]
        checks.append(("local mode, POST → file p50", "< 20 ms", f'{lat["p50_ms"]:.1f} ms',
                       lat["p50_ms"] < 20))
        peak = max(v for k, v in rss.items() if k.startswith("dev"))
        checks.append(("local mode peak RSS", "< 40 MB", f"{peak:.1f} MB", peak < 40))
        c = r["api_checks"]["local"]
        checks.append(("local mode: files = 200s after a SIGKILL", "equal",
                       f'{c["files"]:,} files, {c["accepted"]:,} accepted', c["ok"]))
        w = worker["local"]
        checks.append(("local worker objects = messages", "equal",
                       f'{w["objects"]:,} / {w["messages"]:,}', w["objects"] == w["messages"]))
    if "moto" in r:
        m = r["moto"]
        a = m["api_send"]
        checks.append(("API on moto, 10 clients, vs direct SendMessage", "≥ 80 %",
                       f'{a["ratio"]:.0%} ({a["per_second"]:.0f} vs '
                       f'{m["direct_send"]["per_second"]:.0f}/s)', a["ratio"] >= 0.8))
        lost = sum(x["lost"] for x in api["moto"].values())
        checks.append(("API on moto: accepted and not queued", "0", str(lost), lost == 0))
        w = m["worker_drain"]
        checks.append(("worker on moto, 500 backlog, vs trivial consumer", "≥ 80 %",
                       f'{w["ratio"]:.0%} ({w["per_second"]:.0f} vs '
                       f'{m["trivial_drain"]["per_second"]:.0f} msg/s)', w["ratio"] >= 0.8))
        checks.append(("worker on moto: objects = messages", "equal",
                       f'{w["stored"]} / {w["messages"]}', w["stored"] == w["messages"]))
        p = m["post_to_object"]
        checks.append(("POST → object in S3, moto, idle worker, p50", "< 100 ms",
                       f'{p["p50_ms"]:.0f} ms (p90 {p["p90_ms"]:.0f}, max {p["max_ms"]:.0f})',
                       p["p50_ms"] < 100))
    if "large" in r:
        g = r["large"]
        out += ["", "### Large emails", "",
                "| path | email | emails/s | MB/s | p99 |", "|---|---|---|---|---|"]
        for where, key in (("API, stub", "api"), ("API, local mode", "local")):
            for name, x in g[key].items():
                out.append(f'| {where} | {name} | {x["rps"]:,.0f} | {x["mb_per_s"]:,.0f} | '
                           f'{x["p99_ms"]:.0f} ms |')
        for name, x in g["worker"].items():
            out.append(f'| worker, stub backlog | {name} | {x["per_second"]:,.0f} | '
                       f'{x["mb_per_s"]:,.0f} | – |')
        out += ["", "| process | peak RSS, MB |", "|---|---|"]
        out += [f"| {k} | {v:.1f} |" for k, v in g["rss_mb"].items()]
        b = g["burst"]
        peak = g["rss_mb"]["api, 64 concurrent 5 MB uploads"]
        # Each process within a third of the smallest task Terraform sets (512 MiB), the rest
        # left to the allocator's slack and the runtime.
        limit = 512 * 1.048576 / 3
        checks.append(("API peak RSS, 64 concurrent 5 MB uploads (budget 64 MiB)", f"< {limit:.0f} MB",
                       f'{peak:.0f} MB ({b["non2xx"]:,} of {b["requests"]:,} answered 503)',
                       peak < limit))
        # The worker's worst case: staged emails within the same budget, plus its inline batches.
        worker = max((v, k) for k, v in g["rss_mb"].items() if k.startswith("worker"))
        checks.append(("worker peak RSS on large-email backlogs (budget 64 MiB)", f"< {limit:.0f} MB",
                       f"{worker[0]:.0f} MB ({worker[1]})", worker[0] < limit))
    if "static" in r:
        st = r["static"]
        out += ["", "### Static musl binary (the image's) vs glibc build", "",
                "| measurement | glibc | musl (static) |", "|---|---|---|"]
        for c, x in st["api"].items():
            g, m = x["glibc"], x["musl (static)"]
            out.append(f'| API on the stub, {c} connections | {g["rps"]:,.0f} req/s, '
                       f'{g["cpu_us"]:.1f} µs CPU per request | {m["rps"]:,.0f} req/s, '
                       f'{m["cpu_us"]:.1f} µs CPU per request |')
        g, m = st["worker"]["glibc"], st["worker"]["musl (static)"]
        out.append(f'| worker, stub backlog | {g["per_second"]:,.0f} msg/s, {g["cpu_us"]:.1f} µs '
                   f'CPU per message | {m["per_second"]:,.0f} msg/s, {m["cpu_us"]:.1f} µs CPU '
                   f'per message |')
        rss = st["rss_mb"]
        out.append(f'| peak RSS, API / worker | {rss["api, glibc"]:.1f} / {rss["worker, glibc"]:.1f}'
                   f' MB | {rss["api, musl (static)"]:.1f} / {rss["worker, musl (static)"]:.1f} MB |')
        sz = st["size_bytes"]
        out.append(f'| binary size | {sz["glibc"] / 1e6:.1f} MB | {sz["musl (static)"] / 1e6:.1f} MB |')
        ratio = st["api"][50]["glibc"]["cpu_us"] / st["api"][50]["musl (static)"]["cpu_us"]
        checks.append(("static musl API vs glibc, CPU per request, 50 connections", "≥ 90 %",
                       f'{ratio:.0%} ({st["api"][50]["musl (static)"]["cpu_us"]:.1f} vs '
                       f'{st["api"][50]["glibc"]["cpu_us"]:.1f} µs)', ratio >= 0.9))
    if "metrics_cost" in r:
        m = r["metrics_cost"]
        cpu = m.get("cpu_us")
        cpu_text = (f'; CPU per request {cpu["on"]:.1f} vs {cpu["off"]:.1f} µs' if cpu else "")
        checks.append(("metrics on vs off, API on the stub, 50 connections", "≥ 95 %",
                       f'{m["ratio"]:.0%} ({m["on"]["rps"]:,.0f} vs {m["off"]["rps"]:,.0f} req/s, '
                       f'medians of {m.get("runs", REPEATS)} runs each{cpu_text}, {m["date"]})',
                       m["ratio"] >= 0.95))
    out += ["", "### Targets", "", "| measurement | target | result | |", "|---|---|---|---|"]
    out += [f"| {a} | {t} | {v} | {check(ok)} |" for a, t, v, ok in checks]
    return "\n".join(out) + "\n"


def svg_chart(r):
    """Two log-scale bar panels: API requests/s by connections and backend,
    worker messages/s by backend. Plain SVG, no plotting library."""
    import math
    colors = {"bare": "#9aa5b1", "stub": "#2f6fde", "local": "#2e9e5b", "moto": "#d9822b",
              "moto (trivial consumer)": "#b8b8b8"}
    api, worker = r["api"], r["worker"]
    w_total, h = 940, 390
    top, bottom, left = 50, 300, 70
    lo, hi = 10, 1_000_000

    def y(v):
        v = max(v, lo)
        return bottom - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (bottom - top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w_total}" height="{h}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{w_total}" height="{h}" fill="white"/>']

    def axis(x0, x1, title):
        parts.append(f'<text x="{(x0 + x1) / 2}" y="25" text-anchor="middle" font-size="14" '
                     f'font-weight="bold">{title}</text>')
        for e in range(1, 7):
            yy = y(10 ** e)
            parts.append(f'<line x1="{x0}" x2="{x1}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e3e3e3"/>')
            parts.append(f'<text x="{x0 - 6}" y="{yy + 4:.1f}" text-anchor="end">'
                         f'{10 ** e:,}</text>')
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{bottom}" y2="{bottom}" stroke="#555"/>')

    # API panel.
    x0, x1 = left, 560
    axis(x0, x1, "API requests/s (log scale) by connections")
    levels = sorted({c for runs in api.values() for c in runs}, key=int)
    keys = [k for k, _ in API_ROWS if k in api and k in colors]
    group = (x1 - x0) / len(levels)
    bar = (group - 20) / len(keys)
    for i, c in enumerate(levels):
        gx = x0 + i * group + 10
        parts.append(f'<text x="{gx + (group - 20) / 2:.1f}" y="{bottom + 18}" '
                     f'text-anchor="middle">{c}</text>')
        for j, k in enumerate(keys):
            if c in api[k]:
                v = api[k][c]["rps"]
                bx = gx + j * bar
                parts.append(f'<rect x="{bx:.1f}" y="{y(v):.1f}" width="{bar - 2:.1f}" '
                             f'height="{bottom - y(v):.1f}" fill="{colors[k]}">'
                             f'<title>{k}, {c} connections: {v:,.0f} req/s</title></rect>')
    parts.append(f'<text x="{(x0 + x1) / 2}" y="{bottom + 34}" text-anchor="middle" '
                 f'fill="#555">connections</text>')
    # Worker panel.
    x0, x1 = 660, 910
    axis(x0, x1, "worker messages/s (log scale)")
    wkeys = [k for k, _ in WORKER_ROWS if k in worker and k in colors]
    bar = (x1 - x0 - 20) / max(len(wkeys), 1)
    for j, k in enumerate(wkeys):
        v = worker[k]["per_second"]
        bx = x0 + 10 + j * bar
        parts.append(f'<rect x="{bx:.1f}" y="{y(v):.1f}" width="{bar - 8:.1f}" '
                     f'height="{bottom - y(v):.1f}" fill="{colors[k]}">'
                     f'<title>{k}: {v:,.0f} msg/s</title></rect>')
        parts.append(f'<text x="{bx + (bar - 8) / 2:.1f}" y="{y(v) - 4:.1f}" '
                     f'text-anchor="middle" font-size="10">{v:,.0f}</text>')
    # Legend.
    names = {"bare": "bare axum", "stub": "stub AWS", "local": "local mode", "moto": "moto",
             "moto (trivial consumer)": "trivial consumer (moto)"}
    lx = left
    for k in [k for k in colors if k in api or k in worker]:
        parts.append(f'<rect x="{lx}" y="{h - 38}" width="12" height="12" fill="{colors[k]}"/>')
        parts.append(f'<text x="{lx + 16}" y="{h - 28}">{names[k]}</text>')
        lx += 30 + 7 * len(names[k])
    m = r["machine"]
    parts.append(f'<text x="{w_total - 10}" y="{h - 10}" text-anchor="end" fill="#777" '
                 f'font-size="10">{m["cpus"]} CPUs, {m["duration"]} per wrk run, {m["date"]}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


ALL_PARTS = ("stub", "local", "moto", "metrics", "large", "static")


def update_readme(md, results):
    """Puts the tables between the README's benchmark markers once every part
    has been measured (by one run, or by partial runs, each part's date
    stated)."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin not in text or end not in text:
        return
    dates = results.get("dates", {})
    missing = [p for p in ALL_PARTS if p not in dates]
    if missing:
        print(f"README.md left as it is: no results yet for {', '.join(missing)}")
        return
    by_date = {}
    for part in ALL_PARTS:
        by_date.setdefault(dates[part], []).append(part)
    when = "; ".join(f"{', '.join(ps)} on {d}" for d, ps in sorted(by_date.items()))
    m = results["machine"]
    block = (f"{begin}\n_Measured ({when}) on {m['cpus']} CPUs, {m['duration']} per wrk run "
             f"(on the stub: median of {m.get('repeats', 1)} runs, bare and API interleaved); "
             f"every process on the same machine._\n\n" + md.replace("### ", "#### ") + end)
    head, rest = text.split(begin, 1)
    readme.write_text(head + block + rest.split(end, 1)[1])
    print("README.md updated")


def main():
    for tool in (Q2B, BENCH, VENV_BIN / "moto_server"):
        if not Path(tool).exists():
            raise SystemExit(f"{tool} is missing: run scripts/bench.sh")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing (apt-get install wrk)")
    results = {"machine": {"cpus": os.cpu_count(), "duration": DURATION, "repeats": REPEATS,
                           "date": time.strftime("%Y-%m-%d")},
               "api": {}, "api_checks": {}, "worker": {}, "latency": {}, "rss_mb": {}}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
        script = f.name
    try:
        parts = os.environ.get("BENCH_PARTS", ",".join(ALL_PARTS)).split(",")
        # A partial run keeps the last results of the parts it skips.
        previous = ROOT / "bench" / "results.json"
        if os.environ.get("BENCH_PARTS") and previous.exists():
            kept = json.loads(previous.read_text(), object_hook=lambda d: {
                int(k) if k.isdigit() else k: v for k, v in d.items()})
            kept["machine"] = results["machine"]
            kept.setdefault("dates", {})
            results = kept
            for part in parts:
                results["api"].pop(part, None)
        if "stub" in parts:
            bench_stub(results, script)
        if "local" in parts:
            bench_local(results, script)
        if "moto" in parts:
            bench_moto(results)
        if "metrics" in parts:
            bench_metrics(results, script)
        if "large" in parts:
            bench_large(results, script)
        if "static" in parts:
            bench_static(results, script)
        # When each part was last measured, for the README's header.
        results.setdefault("dates", {}).update({p: results["machine"]["date"] for p in parts})
    finally:
        for p in children:
            if p.poll() is None:
                p.kill()
        os.unlink(script)
    out = ROOT / "bench"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if "moto" in results:
        results["rss_mb"]["worker (moto)"] = results["moto"]["worker_drain"]["peak_rss_mb"]
    md = table(results)
    (out / "results.md").write_text(md)
    (out / "chart.svg").write_text(svg_chart(results))
    update_readme(md, results)
    print(md)
    failed = [line for line in md.splitlines() if "**not met**" in line]
    print(f"{len(failed)} target(s) not met; results in bench/results.md, chart in bench/chart.svg")


if __name__ == "__main__":
    main()
