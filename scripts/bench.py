#!/usr/bin/env python3
"""Benchmarks of Queue2Bucket on this machine; run through scripts/bench.sh.

Measures, in one run:
  1. The API's own cost: the release binary against an instant-answer AWS stub
     on loopback, with wrk at 10 and 50 connections, next to a bare axum
     handler returning a constant JSON body. Peak RSS of the API.
  2. The worker's own cost: the same stub answering full batches of 10.
  3. Against moto (the real protocol): API requests/s at 10 connections next to
     moto's own direct SendMessage rate; a 500-message backlog drained by the
     worker next to a trivial receive -> put -> delete consumer; every message
     checked to be stored exactly once.
  4. POST -> object visible in S3 on moto, with an idle worker.

Writes the results to bench/results.json and a Markdown table to
bench/results.md, and prints the table.
"""

import json
import os
import re
import shutil
import signal
import socket
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
TOKEN = "bench-token"
DATA = ('{"email_subject":"Hello","email_sender":"alice@example.com",'
        '"email_timestream":"1732780800","email_content":"Hi Bob"}')
BODY = json.dumps({"data": json.loads(DATA), "token": TOKEN}, separators=(",", ":"))

WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
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


def wrk(url, connections, script):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{DURATION}", "--timeout", "5s",
         "-s", script, url],
        env={**os.environ, "BENCH_BODY": BODY}, capture_output=True, text=True, check=True,
    ).stdout
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    secs = r["duration_us"] / 1e6
    return {
        "rps": r["requests"] / secs,
        "requests": r["requests"],
        "non2xx": r["non2xx"],
        "socket_errors": r["socket_errors"],
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "p999_ms": r["p999_us"] / 1000,
    }


def aws_env(endpoint):
    return {
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
        "RUST_LOG": "warn",
    }


def start_api(endpoint, queue_url, param="/bench/token"):
    port = free_port()
    env = aws_env(endpoint) | {"SQS_QUEUE_URL": queue_url, "TOKEN_PARAM_NAME": param,
                               "PORT": str(port)}
    p = start([Q2B, "api"], env)
    wait_http(f"http://127.0.0.1:{port}/")
    return p, f"http://127.0.0.1:{port}"


def bench_own_cost(results, script):
    stub_port, bare_port = free_port(), free_port()
    stub = start([BENCH, "stub", "--port", stub_port, "--token", TOKEN], name="stub")
    bare = start([BENCH, "bare", "--port", bare_port], name="bare")
    stub_url = f"http://127.0.0.1:{stub_port}"
    wait_http(f"{stub_url}/stats")
    wait_http(f"http://127.0.0.1:{bare_port}/")
    api, api_url = start_api(stub_url, f"{stub_url}/123456789012/bench")
    # Warm up: token read, connections open.
    wrk(f"{api_url}/email", 10, script)
    own = {}
    for c in (10, 50):
        own[f"bare_c{c}"] = wrk(f"http://127.0.0.1:{bare_port}/email", c, script)
        own[f"api_c{c}"] = wrk(f"{api_url}/email", c, script)
        own[f"api_c{c}"]["ratio"] = own[f"api_c{c}"]["rps"] / own[f"bare_c{c}"]["rps"]
    own["api_peak_rss_mb"] = peak_rss_mb(api)
    stats = get_json(f"{stub_url}/stats")
    accepted = sum(own[k]["requests"] - own[k]["non2xx"] for k in own if k.startswith("api_c"))
    own["api_non2xx"] = sum(own[k]["non2xx"] for k in own if k.startswith("api_c"))
    own["stub_sent_at_least_accepted"] = stats["sent"] >= accepted
    stop(api)
    stop(bare)

    # Worker against the stub: full batches of 10 forever; count deletes.
    env = aws_env(stub_url) | {"SQS_QUEUE_URL": f"{stub_url}/123456789012/bench",
                               "S3_BUCKET_NAME": "bench"}
    worker = start([Q2B, "worker"], env)
    time.sleep(2)
    before, t0 = get_json(f"{stub_url}/stats"), time.time()
    time.sleep(float(DURATION.rstrip("s")))
    after, t1 = get_json(f"{stub_url}/stats"), time.time()
    own["worker_messages_per_s"] = (after["deleted"] - before["deleted"]) / (t1 - t0)
    own["worker_puts_per_s"] = (after["put"] - before["put"]) / (t1 - t0)
    own["worker_peak_rss_mb"] = peak_rss_mb(worker)
    stop(worker)
    stop(stub)
    results["own_cost"] = own


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
    stop(worker)
    return {"messages": count, "seconds": elapsed, "per_second": count / elapsed,
            "stored": count_keys(s3, "bench", prefix), "left_on_queue": depth(sqs, queue_url)}


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

    def run_json(*args):
        out = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    # Sends: moto's own rate, then the API's, each into an empty queue.
    direct_q = queue("direct")
    m["direct_send"] = run_json(BENCH, "moto-send", "--endpoint", endpoint,
                                "--queue-url", direct_q, "--count", count, "--concurrency", 10)
    api_q = queue("api")
    api, api_url = start_api(endpoint, api_q)
    m["api_send"] = run_json(BENCH, "post-load", "--api", api_url, "--token", TOKEN,
                             "--count", count, "--concurrency", 10)
    m["api_send"]["ratio"] = m["api_send"]["per_second"] / m["direct_send"]["per_second"]
    m["api_send"]["queued"] = depth(sqs, api_q)
    m["api_send"]["lost"] = m["api_send"]["ok"] - m["api_send"]["queued"]
    stop(api)

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


def bench_local(results, script):
    """The local mode: one `queue2bucket dev` process, SQLite queue, files."""
    data = Path(tempfile.mkdtemp(prefix="q2b-bench-local-"))
    port = free_port()
    args = [Q2B, "dev", "--port", port, "--data-dir", data, "--token", TOKEN]
    url = f"http://127.0.0.1:{port}"
    dev = start(args, {"LOG_FORMAT": "text"})
    wait_http(f"{url}/")
    loc = {}
    loc["api_c50"] = wrk(f"{url}/email", 50, script)
    accepted = loc["api_c50"]["requests"] - loc["api_c50"]["non2xx"]
    loc["peak_rss_mb"] = peak_rss_mb(dev)
    # Every accepted request must survive a SIGKILL right after the load.
    dev.kill()
    dev.wait()
    bucket = data / "bucket" / "emails"
    on_disk_at_kill = len(list(bucket.glob("*.json"))) if bucket.exists() else 0
    dev = start(args, {"LOG_FORMAT": "text"})
    wait_http(f"{url}/")
    t0 = time.time()
    while len(list(bucket.glob("*.json"))) < accepted and time.time() - t0 < 300:
        time.sleep(0.5)
    files = len(list(bucket.glob("*.json")))
    drain_s = time.time() - t0
    loc["durability"] = {"accepted": accepted, "files": files,
                         "on_disk_at_kill": on_disk_at_kill,
                         "drained_after_restart_s": drain_s}

    # POST -> file on disk, one email at a time, idle worker.
    latencies = []
    for _ in range(50):
        time.sleep(0.05)
        started = time.perf_counter()
        req = urllib.request.Request(f"{url}/email", data=BODY.encode(),
                                     headers={"content-type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=5).read())
        path = bucket / f'{answer["id"]}.json'
        while not path.exists():
            if time.perf_counter() - started > 10:
                raise SystemExit("a posted email never reached the disk")
            time.sleep(0.0002)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    loc["post_to_file"] = {"samples": len(latencies), "p50_ms": latencies[len(latencies) // 2],
                           "p90_ms": latencies[int(len(latencies) * 0.9)],
                           "max_ms": latencies[-1]}
    stop(dev)
    shutil.rmtree(data, ignore_errors=True)
    results["local"] = loc


def table(r):
    o, m = r["own_cost"], r["moto"]
    rows = [
        ("API vs stub, 10 connections", f'{o["api_c10"]["rps"]:,.0f} req/s',
         f'{o["api_c10"]["ratio"]:.0%} of bare axum ({o["bare_c10"]["rps"]:,.0f} req/s); '
         f'p99 {o["api_c10"]["p99_ms"]:.2f} ms'),
        ("API vs stub, 50 connections", f'{o["api_c50"]["rps"]:,.0f} req/s',
         f'{o["api_c50"]["ratio"]:.0%} of bare axum ({o["bare_c50"]["rps"]:,.0f} req/s); '
         f'p50 {o["api_c50"]["p50_ms"]:.2f} ms, p99 {o["api_c50"]["p99_ms"]:.2f} ms, '
         f'p99.9 {o["api_c50"]["p999_ms"]:.2f} ms'),
        ("API peak RSS", f'{o["api_peak_rss_mb"]:.1f} MB', "after both runs"),
        ("Worker vs stub", f'{o["worker_messages_per_s"]:,.0f} msg/s',
         f'stored and deleted; peak RSS {o["worker_peak_rss_mb"]:.1f} MB'),
        ("API on moto, 10 clients", f'{m["api_send"]["per_second"]:,.0f} req/s',
         f'{m["api_send"]["ratio"]:.0%} of moto\'s direct SendMessage '
         f'({m["direct_send"]["per_second"]:,.0f}/s); {m["api_send"]["ok"]} accepted, '
         f'{m["api_send"]["lost"]} lost'),
        ("Worker on moto, 500 backlog", f'{m["worker_drain"]["per_second"]:,.0f} msg/s',
         f'{m["worker_drain"]["ratio"]:.0%} of a trivial consumer '
         f'({m["trivial_drain"]["per_second"]:,.0f}/s); {m["worker_drain"]["stored"]} '
         f'objects for {m["worker_drain"]["messages"]} messages'),
        ("POST → object in S3 (moto, idle worker)", f'p50 {m["post_to_object"]["p50_ms"]:.0f} ms',
         f'p90 {m["post_to_object"]["p90_ms"]:.0f} ms, max {m["post_to_object"]["max_ms"]:.0f} ms '
         f'over {m["post_to_object"]["samples"]} emails'),
    ]
    loc = r.get("local")
    if loc:
        d = loc["durability"]
        rows += [
            ("Local mode (`dev`), 50 connections", f'{loc["api_c50"]["rps"]:,.0f} req/s',
             f'p50 {loc["api_c50"]["p50_ms"]:.2f} ms, p99 {loc["api_c50"]["p99_ms"]:.2f} ms; '
             f'peak RSS {loc["peak_rss_mb"]:.1f} MB'),
            ("Local mode, SIGKILL after the load", f'{d["files"]:,} files for {d["accepted"]:,} accepted',
             f'{d["on_disk_at_kill"]:,} were on disk at the kill; the rest stored '
             f'{d["drained_after_restart_s"]:.0f} s after restart'),
            ("Local mode, POST → file on disk", f'p50 {loc["post_to_file"]["p50_ms"]:.1f} ms',
             f'p90 {loc["post_to_file"]["p90_ms"]:.1f} ms, max {loc["post_to_file"]["max_ms"]:.1f} ms '
             f'over {loc["post_to_file"]["samples"]} emails'),
        ]
    lines = ["| measurement | result | detail |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def main():
    for tool in (Q2B, BENCH, VENV_BIN / "moto_server"):
        if not Path(tool).exists():
            raise SystemExit(f"{tool} is missing: run scripts/bench.sh")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing (apt-get install wrk)")
    results = {"machine": {"cpus": os.cpu_count(), "duration": DURATION,
                           "date": time.strftime("%Y-%m-%d")}}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
        script = f.name
    try:
        parts = os.environ.get("BENCH_PARTS", "stub,local,moto").split(",")
        if "stub" in parts:
            bench_own_cost(results, script)
        if "local" in parts:
            bench_local(results, script)
        if "moto" in parts:
            bench_moto(results)
    finally:
        for p in children:
            if p.poll() is None:
                p.kill()
        os.unlink(script)
    out = ROOT / "bench"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    md = table(results)
    (out / "results.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
