"""Stand-ins for the parts of AWS that run things, which moto does not do.

moto stores what Terraform creates, but it runs no container, invokes no
function and forwards no request. The rehearsal runs the real binaries
itself and puts these stand-ins in between, each configured only from what
Terraform created (read back through the AWS APIs):

- LambdaRuntime: the Lambda Runtime API one function's process talks to
  (GET .../invocation/next, POST .../response or .../error), as the Lambda
  service provides it to a custom runtime (provided.al2023). One process per
  function, one invocation at a time.
- LoadBalancer: the ALB. Its port-80 listener's default action forwards to a
  target group; an `ip` target group's targets are the API task's port (ECS
  registers the task's address in AWS), a `lambda` one's target is the API
  function, invoked with the ALB's event format, with a request body of at
  most 1 MB (AWS's limit for a Lambda target; a larger one gets 413, as from an ALB).
- EventSourceMapping: Lambda's SQS poller for the worker function: receives
  up to BatchSize messages, invokes the function with an SQS event, and
  deletes the records it did not report in batchItemFailures (with
  ReportBatchItemFailures; all of them when the invocation fails).
"""

from __future__ import annotations

import base64
import http.client
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit


class Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        pass

    def body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(handler: type[BaseHTTPRequestHandler], owner: Any) -> Server:
    server = Server(("127.0.0.1", 0), handler)
    server.owner = owner  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name=f"{type(owner).__name__}-http", daemon=True).start()
    return server


# ---------------------------------------------------------------------------
# Lambda Runtime API
# ---------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload or b"null")


class LambdaRuntime:
    """The Runtime API of one function (one execution environment)."""

    API = "/2018-06-01/runtime"

    def __init__(self, function_arn: str, timeout_seconds: int) -> None:
        self.function_arn = function_arn
        self.timeout_seconds = timeout_seconds
        self.pending: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.results: dict[str, queue.Queue[Outcome]] = {}
        self.lock = threading.Lock()
        self.init_error: str | None = None
        self.ready = threading.Event()  # the function asked for its first invocation
        self.invocations = 0
        self.server = serve(_RuntimeHandler, self)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def invoke(self, event: Any) -> Outcome:
        """Invokes the function synchronously, within its configured timeout."""
        request_id = str(uuid.uuid4())
        answer: queue.Queue[Outcome] = queue.Queue(maxsize=1)
        with self.lock:
            self.results[request_id] = answer
            self.invocations += 1
        self.pending.put((request_id, json.dumps(event).encode()))
        try:
            return answer.get(timeout=self.timeout_seconds + 5)
        except queue.Empty:
            detail = f" (init error: {self.init_error})" if self.init_error else ""
            return Outcome(False, json.dumps({"errorType": "Sandbox.Timedout",
                                              "errorMessage": f"no answer within {self.timeout_seconds} s{detail}"})
                           .encode())
        finally:
            with self.lock:
                self.results.pop(request_id, None)

    def settle(self, request_id: str, outcome: Outcome) -> bool:
        with self.lock:
            answer = self.results.get(request_id)
        if answer is None:
            return False
        answer.put(outcome)
        return True

    def close(self) -> None:
        self.server.shutdown()


class _RuntimeHandler(Quiet):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        runtime: LambdaRuntime = self.server.owner  # type: ignore[attr-defined]
        if self.path != f"{LambdaRuntime.API}/invocation/next":
            self.reply(404)
            return
        runtime.ready.set()
        request_id, event = runtime.pending.get()
        deadline_ms = int((time.time() + runtime.timeout_seconds) * 1000)
        self.reply(200, event, {
            "content-type": "application/json",
            "lambda-runtime-aws-request-id": request_id,
            "lambda-runtime-deadline-ms": str(deadline_ms),
            "lambda-runtime-invoked-function-arn": runtime.function_arn,
            "lambda-runtime-trace-id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent=1;Sampled=0",
        })

    def do_POST(self) -> None:  # noqa: N802
        runtime: LambdaRuntime = self.server.owner  # type: ignore[attr-defined]
        body = self.body()
        parts = self.path.removeprefix(LambdaRuntime.API + "/").split("/")
        if parts == ["init", "error"]:
            runtime.init_error = body.decode("utf-8", "replace")
            self.reply(202)
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            known = runtime.settle(parts[1], Outcome(parts[2] == "response", body))
            self.reply(202 if known else 400)
        else:
            self.reply(404)


# ---------------------------------------------------------------------------
# Application Load Balancer
# ---------------------------------------------------------------------------

TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml")

# The largest request body an ALB passes to a Lambda target ("1 MB", the
# Elastic Load Balancing guide; read as 10^6 bytes, the stricter reading).
ALB_LAMBDA_BODY_LIMIT = 1_000_000


def alb_event(target_group_arn: str, method: str, path: str, headers: dict[str, str], body: bytes,
              client: str, port: int) -> dict[str, Any]:
    """The event an ALB sends a Lambda target (multi-value headers off, the default)."""
    url = urlsplit(path)
    query = {}
    for pair in filter(None, url.query.split("&")):
        k, _, v = pair.partition("=")
        query[k] = v  # the ALB passes query parameters as they were sent (not decoded)
    event_headers = {k.lower(): v for k, v in headers.items()}
    content_type = event_headers.get("content-type", "").lower()
    text = not body or any(content_type.startswith(t) for t in TEXT_TYPES)
    try:
        body_text = body.decode("utf-8") if text else None
    except UnicodeDecodeError:
        body_text = None
    event_headers.update({
        "x-forwarded-for": client,
        "x-forwarded-port": str(port),
        "x-forwarded-proto": "http",
        "x-amzn-trace-id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
    })
    return {
        "requestContext": {"elb": {"targetGroupArn": target_group_arn}},
        "httpMethod": method,
        "path": url.path,
        "queryStringParameters": query,
        "headers": event_headers,
        "body": body_text if body_text is not None else base64.b64encode(body).decode(),
        "isBase64Encoded": body_text is None,
    }


class LoadBalancer:
    """The ALB's listener: forwards every request to its target group's target."""

    def __init__(self, dns_name: str, listener_port: int, target_group_arn: str, target_type: str,
                 forward: Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]) -> None:
        self.dns_name = dns_name
        self.listener_port = listener_port
        self.target_group_arn = target_group_arn
        self.target_type = target_type
        self.forward = forward
        self.requests = 0
        self.server = serve(_AlbHandler, self)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()


class _AlbHandler(Quiet):
    def handle_any(self) -> None:
        alb: LoadBalancer = self.server.owner  # type: ignore[attr-defined]
        alb.requests += 1
        headers = {k: v for k, v in self.headers.items()}
        try:
            status, out_headers, body = alb.forward(self.command, self.path, headers, self.body())
        except Exception as exc:  # the target failed: what the ALB answers then
            status, out_headers, body = 502, {"content-type": "text/plain"}, f"502 Bad Gateway ({exc})".encode()
        out_headers = {k: v for k, v in out_headers.items()
                       if k.lower() not in ("content-length", "transfer-encoding", "connection")}
        self.reply(status, body, out_headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any  # noqa: N815


def forward_to_ip(host: str, port: int) -> Callable[[str, str, dict[str, str], bytes],
                                                     tuple[int, dict[str, str], bytes]]:
    """An `ip` target: the request as it came, to the task's address."""
    def forward(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()
    return forward


def forward_to_lambda(runtime: LambdaRuntime, target_group_arn: str, listener_port: int
                      ) -> Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]:
    """A `lambda` target: the request as an ALB event, the function's answer as the response."""
    def forward(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if len(body) > ALB_LAMBDA_BODY_LIMIT:
            return 413, {"content-type": "text/plain"}, b"413 Request Entity Too Large (request body over 1 MB for a Lambda target)"
        outcome = runtime.invoke(alb_event(target_group_arn, method, path, headers, body, "127.0.0.1",
                                           listener_port))
        if not outcome.ok:
            return 502, {"content-type": "text/plain"}, b"502 Bad Gateway (the function failed)"
        answer = outcome.json()
        payload = answer.get("body") or ""
        data = base64.b64decode(payload) if answer.get("isBase64Encoded") else payload.encode()
        return int(answer["statusCode"]), dict(answer.get("headers") or {}), data
    return forward


# ---------------------------------------------------------------------------
# SQS event source mapping
# ---------------------------------------------------------------------------


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    attributes = message.get("Attributes", {})
    message_attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        message_attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(value["BinaryValue"]).decode() if "BinaryValue" in value else None,
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": [base64.b64encode(b).decode() for b in value.get("BinaryListValues", [])],
            "dataType": value.get("DataType"),
        }
        message_attributes[name] = {k: v for k, v in message_attributes[name].items() if v is not None}
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {k: attributes[k] for k in ("ApproximateReceiveCount", "SentTimestamp", "SenderId",
                                                  "ApproximateFirstReceiveTimestamp") if k in attributes},
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


class EventSourceMapping:
    """Lambda's poller for one SQS event source mapping."""

    def __init__(self, sqs: Any, queue_url: str, queue_arn: str, region: str, batch_size: int,
                 report_batch_item_failures: bool, runtime: LambdaRuntime, log: Callable[[str], None]) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.region = region
        self.batch_size = batch_size
        self.report_failures = report_batch_item_failures
        self.runtime = runtime
        self.log = log
        self.stopping = threading.Event()
        self.batches = 0
        self.deleted = 0
        self.retried = 0
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self.run, name="event-source-mapping", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # keep polling, as Lambda does; the rehearsal reports it
                self.errors.append(repr(exc))
                time.sleep(0.5)

    def poll_once(self) -> None:
        # Lambda long-polls for up to 20 s; 1 s keeps the stand-in quick to stop.
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size, WaitTimeSeconds=1,
            AttributeNames=["All"], MessageAttributeNames=["All"])
        messages = response.get("Messages", [])
        if not messages:
            return
        self.batches += 1
        event = {"Records": [sqs_record(m, self.queue_arn, self.region) for m in messages]}
        outcome = self.runtime.invoke(event)
        by_id = {m["MessageId"]: m for m in messages}
        failed: set[str] = set(by_id)
        if outcome.ok:
            answer = outcome.json() if outcome.payload else None
            items = (answer or {}).get("batchItemFailures") or [] if self.report_failures else []
            reported = {item.get("itemIdentifier") for item in items if isinstance(item, dict)}
            if reported <= set(by_id):
                failed = reported
            else:  # an identifier that is not in the batch: Lambda retries the whole batch
                self.log(f"event source mapping: unknown itemIdentifier in {answer}; retrying the batch")
        done = [m for mid, m in by_id.items() if mid not in failed]
        if done:
            result = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
            if result.get("Failed"):
                self.errors.append(f"DeleteMessageBatch failed for {result['Failed']}")
        self.deleted += len(done)
        self.retried += len(failed)
        # Failed records stay in the queue: they come back after the visibility timeout.

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
