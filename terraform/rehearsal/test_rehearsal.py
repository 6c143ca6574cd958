#!/usr/bin/env python3
"""Unit tests of the rehearsal's own logic: the IAM evaluator, the mapping of
recorded requests to IAM actions and ARNs, the AWS stand-ins and the readers
of the manifest and the README. Run by scripts/rehearse.sh before it
rehearses (python -m unittest, a few seconds, no emulator)."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import tempfile
import threading
import unittest
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import iam_policy  # noqa: E402
import rehearse  # noqa: E402
import standins  # noqa: E402

ACCOUNT = "123456789012"
QUEUE = "arn:aws:sqs:us-east-2:123456789012:queue2bucket"


def doc(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


class EvaluateTest(unittest.TestCase):
    def test_allow_needs_a_matching_action_and_resource(self) -> None:
        d = doc({"Sid": "Send", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": QUEUE})
        self.assertTrue(iam_policy.evaluate([d], "sqs:SendMessage", QUEUE).allowed)
        self.assertTrue(iam_policy.evaluate([d], "SQS:sendmessage", QUEUE).allowed, "actions ignore case")
        self.assertFalse(iam_policy.evaluate([d], "sqs:SendMessage", QUEUE + "-dlq").allowed)
        self.assertFalse(iam_policy.evaluate([d], "sqs:ReceiveMessage", QUEUE).allowed)
        self.assertEqual(iam_policy.evaluate([d], "sqs:ReceiveMessage", QUEUE).reason, "no statement allows it")

    def test_wildcards(self) -> None:
        d = doc({"Effect": "Allow", "Action": ["s3:Get*"], "Resource": "arn:aws:s3:::b/emails/*"})
        self.assertTrue(iam_policy.evaluate([d], "s3:GetObject", "arn:aws:s3:::b/emails/x/y.json").allowed)
        self.assertFalse(iam_policy.evaluate([d], "s3:GetObject", "arn:aws:s3:::b/other/y.json").allowed)
        self.assertFalse(iam_policy.evaluate([d], "s3:PutObject", "arn:aws:s3:::b/emails/y.json").allowed)
        q = doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/?.json"})
        self.assertTrue(iam_policy.evaluate([q], "s3:GetObject", "arn:aws:s3:::b/a.json").allowed)
        self.assertFalse(iam_policy.evaluate([q], "s3:GetObject", "arn:aws:s3:::b/ab.json").allowed)

    def test_explicit_deny_wins_across_documents(self) -> None:
        allow = doc({"Effect": "Allow", "Action": "*", "Resource": "*"})
        deny = doc({"Sid": "NoSecrets", "Effect": "Deny", "Action": "ssm:GetParameter*", "Resource": "*"})
        d = iam_policy.evaluate([allow, deny], "ssm:GetParameter", "arn:aws:ssm:us-east-2:1:parameter/x")
        self.assertFalse(d.allowed)
        self.assertEqual(d.reason, "explicitly denied by NoSecrets")

    def test_not_action_and_not_resource(self) -> None:
        d = doc({"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::secret/*"})
        self.assertTrue(iam_policy.evaluate([d], "sqs:SendMessage", QUEUE).allowed)
        self.assertFalse(iam_policy.evaluate([d], "iam:PassRole", "*").allowed)
        self.assertFalse(iam_policy.evaluate([d], "s3:GetObject", "arn:aws:s3:::secret/k").allowed)

    def test_conditions(self) -> None:
        d = doc({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
                 "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}})
        self.assertTrue(iam_policy.evaluate([d], "iam:PassRole", "r", {"iam:PassedToService":
                                                                       "ecs-tasks.amazonaws.com"}).allowed)
        self.assertFalse(iam_policy.evaluate([d], "iam:PassRole", "r", {"iam:PassedToService":
                                                                        "lambda.amazonaws.com"}).allowed)
        self.assertFalse(iam_policy.evaluate([d], "iam:PassRole", "r").allowed, "a missing key fails the condition")
        tls = doc({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
                   "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}}})
        self.assertFalse(iam_policy.evaluate([tls], "s3:GetObject", "x", {"s3:TlsVersion": "1.1"},
                                             resource_policy=True).allowed)
        self.assertTrue(iam_policy.evaluate([tls], "s3:GetObject", "x", {"s3:TlsVersion": "1.3"},
                                            resource_policy=True).allowed)
        if_exists = doc({"Effect": "Allow", "Action": "a:b", "Resource": "*",
                         "Condition": {"StringEqualsIfExists": {"k": "v"}}})
        self.assertTrue(iam_policy.evaluate([if_exists], "a:b", "*").allowed)
        self.assertFalse(iam_policy.evaluate([if_exists], "a:b", "*", {"k": "w"}).allowed)
        with self.assertRaises(iam_policy.PolicyError):
            iam_policy.evaluate([doc({"Effect": "Allow", "Action": "a:b", "Resource": "*",
                                      "Condition": {"ForAnyValue:StringEquals": {"k": "v"}}})], "a:b", "*", {"k": "v"})

    def test_list_bucket_limited_to_a_prefix(self) -> None:
        """The worker's listing grant: the bucket, only with s3:prefix below the staging prefix."""
        d = doc({"Sid": "FindStagedEmails", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
                 "Condition": {"StringLike": {"s3:prefix": ["staging/*"]}}})
        allowed = iam_policy.evaluate([d], "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "staging/x.json"})
        self.assertEqual((allowed.allowed, allowed.reason), (True, "allowed by FindStagedEmails"))
        for context in ({"s3:prefix": "emails/x.json"}, {"s3:prefix": ""}, {"s3:prefix": "Staging/x.json"}, {}):
            self.assertFalse(iam_policy.evaluate([d], "s3:ListBucket", "arn:aws:s3:::b", context).allowed, context)
        self.assertFalse(iam_policy.evaluate([d], "s3:ListBucket", "arn:aws:s3:::other",
                                             {"s3:prefix": "staging/x.json"}).allowed)

    def test_resource_policies_consider_only_principal_star(self) -> None:
        d = doc({"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "*", "Resource": "*"},
                {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sqs:*", "Resource": QUEUE,
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
        self.assertTrue(iam_policy.evaluate([d], "sqs:SendMessage", QUEUE, {"aws:SecureTransport": "true"},
                                            resource_policy=True).allowed)
        self.assertFalse(iam_policy.evaluate([d], "sqs:SendMessage", QUEUE, {"aws:SecureTransport": "false"},
                                             resource_policy=True).allowed)


def entry(service: str, *, method: str = "POST", path: str = "/", query: str = "", operation: str = "",
          params: dict | None = None) -> dict:
    return {"key": "AKIA", "region": "us-east-2", "service": service, "method": method, "path": path,
            "query": query, "operation": operation, "params": params or {}}


class CallsTest(unittest.TestCase):
    def call(self, e: dict) -> iam_policy.Call:
        return iam_policy.call_of(e, ACCOUNT)

    def test_json_protocol_calls_name_their_resource(self) -> None:
        c = self.call(entry("sqs", operation="DeleteMessageBatch",
                            params={"QueueUrl": "http://127.0.0.1:5000/123456789012/queue2bucket"}))
        self.assertEqual((c.action, c.resource), ("sqs:DeleteMessage", QUEUE))
        c = self.call(entry("ssm", operation="GetParameter", params={"Name": "/queue2bucket/api-token"}))
        self.assertEqual(c.resource, "arn:aws:ssm:us-east-2:123456789012:parameter/queue2bucket/api-token")
        c = self.call(entry("ecs", operation="UpdateService", params={"cluster": "q", "service": "q-api"}))
        self.assertEqual(c.resource, "arn:aws:ecs:us-east-2:123456789012:service/q/q-api")
        c = self.call(entry("ecr", operation="DescribeRepositories", params={"repositoryNames": ["q"]}))
        self.assertEqual((c.action, c.resource), ("ecr:DescribeRepositories",
                                                  "arn:aws:ecr:us-east-2:123456789012:repository/q"))
        c = self.call(entry("monitoring", operation="DescribeAlarms"))
        self.assertEqual((c.action, c.resource), ("cloudwatch:DescribeAlarms", "*"))

    def test_s3_rest_calls(self) -> None:
        put = self.call(entry("s3", method="PUT", path="/b/emails/x.json", query="x-id=PutObject"))
        self.assertEqual((put.action, put.resource), ("s3:PutObject", "arn:aws:s3:::b/emails/x.json"))
        head = self.call(entry("s3", method="HEAD", path="/b/emails/x.json"))
        self.assertEqual(head.action, "s3:GetObject")
        version = self.call(entry("s3", method="GET", path="/b/k", query="versionId=3"))
        self.assertEqual(version.action, "s3:GetObjectVersion")
        self.assertEqual(self.call(entry("s3", method="GET", path="/b", query="versioning=")).action,
                         "s3:GetBucketVersioning")
        self.assertEqual(self.call(entry("s3", method="DELETE", path="/b", query="policy=")).action,
                         "s3:DeleteBucketPolicy")
        listing = self.call(entry("s3", method="GET", path="/b", query="list-type=2&prefix=emails%2F"))
        self.assertEqual((listing.action, listing.resource), ("s3:ListBucket", "arn:aws:s3:::b"))
        self.assertEqual(listing.context, {"s3:prefix": "emails/"}, "a listing is judged by its prefix")
        self.assertEqual(self.call(entry("s3", method="GET", path="/b", query="list-type=2")).context, {},
                         "a listing without a prefix has no s3:prefix")
        self.assertTrue(self.call(entry("s3", method="GET", path="/b", query="unheard-of=")).action
                        .startswith("s3:?"), "an unknown S3 call is not guessed")

    def test_lambda_rest_calls(self) -> None:
        c = self.call(entry("lambda", method="PUT", path="/2015-03-31/functions/queue2bucket-api/code"))
        self.assertEqual((c.action, c.resource), ("lambda:UpdateFunctionCode",
                                                  "arn:aws:lambda:us-east-2:123456789012:function:queue2bucket-api"))
        self.assertEqual(self.call(entry("lambda", method="GET", path="/2015-03-31/functions/")).action,
                         "lambda:ListFunctions")
        self.assertTrue(self.call(entry("lambda", method="GET", path="/2099-01-01/nowhere")).action
                        .startswith("lambda:?"))

    def test_registering_a_task_definition_passes_its_roles(self) -> None:
        e = entry("ecs", operation="RegisterTaskDefinition",
                  params={"taskRoleArn": "arn:aws:iam::1:role/t", "executionRoleArn": "arn:aws:iam::1:role/e"})
        calls = [c for _, c in iam_policy.calls_from_log([json.dumps(e)], ACCOUNT)]
        self.assertEqual([c.action for c in calls], ["ecs:RegisterTaskDefinition", "iam:PassRole", "iam:PassRole"])
        self.assertEqual({c.resource for c in calls[1:]}, {"arn:aws:iam::1:role/t", "arn:aws:iam::1:role/e"})
        self.assertEqual(calls[1].context, {"iam:PassedToService": "ecs-tasks.amazonaws.com"})


    def test_a_read_of_a_missing_key_is_judged_by_list_bucket(self) -> None:
        """S3 answers 404 to a read of a missing key only if the caller may list
        the bucket with that key as s3:prefix; 403 otherwise."""
        def calls(method: str, status: int) -> list[iam_policy.Call]:
            e = entry("s3", method=method, path="/b/staging/0190-x.json") | {"status": status}
            return [c for _, c in iam_policy.calls_from_log([json.dumps(e)], ACCOUNT)]

        for method in ("GET", "HEAD"):
            got = calls(method, 404)
            self.assertEqual([c.action for c in got], ["s3:GetObject", "s3:ListBucket"])
            self.assertEqual((got[1].resource, got[1].context),
                             ("arn:aws:s3:::b", {"s3:prefix": "staging/0190-x.json"}))
            self.assertTrue(got[1].answers_missing_key and not got[0].answers_missing_key)
        self.assertEqual([c.action for c in calls("GET", 200)], ["s3:GetObject"])
        self.assertEqual([c.action for c in calls("GET", 403)], ["s3:GetObject"])


class StandinsTest(unittest.TestCase):
    def test_alb_event(self) -> None:
        event = standins.alb_event("arn:tg", "POST", "/email?a=1&b=x%20y", {"Content-Type": "application/json"},
                                   b'{"k":"\xc3\xa9"}', "127.0.0.1", 80)
        self.assertEqual(event["path"], "/email")
        self.assertEqual(event["queryStringParameters"], {"a": "1", "b": "x%20y"})
        self.assertEqual(event["body"], '{"k":"é"}')
        self.assertFalse(event["isBase64Encoded"])
        self.assertEqual(event["headers"]["content-type"], "application/json")
        self.assertEqual(event["requestContext"]["elb"]["targetGroupArn"], "arn:tg")
        binary = standins.alb_event("arn:tg", "POST", "/email", {"content-type": "application/octet-stream"},
                                    b"\xff\x00", "127.0.0.1", 80)
        self.assertTrue(binary["isBase64Encoded"])
        self.assertEqual(base64.b64decode(binary["body"]), b"\xff\x00")

    def test_sqs_record(self) -> None:
        record = standins.sqs_record({
            "MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}", "MD5OfBody": "x",
            "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1", "Other": "no"},
            "MessageAttributes": {"q2b-id": {"StringValue": "id-1", "DataType": "String"}},
        }, QUEUE, "us-east-2")
        self.assertEqual(record["attributes"], {"ApproximateReceiveCount": "2", "SentTimestamp": "1"})
        self.assertEqual(record["messageAttributes"], {"q2b-id": {"stringValue": "id-1", "stringListValues": [],
                                                                  "binaryListValues": [], "dataType": "String"}})
        self.assertEqual((record["eventSource"], record["eventSourceARN"]), ("aws:sqs", QUEUE))

    def _function(self, runtime: standins.LambdaRuntime, answer: callable) -> threading.Thread:
        """A minimal custom runtime: one invocation, answered by `answer(event)`."""
        def run() -> None:
            base = f"http://{runtime.address}/2018-06-01/runtime"
            with urllib.request.urlopen(f"{base}/invocation/next", timeout=10) as r:
                request_id = r.headers["lambda-runtime-aws-request-id"]
                self.assertIn(runtime.function_arn, r.headers["lambda-runtime-invoked-function-arn"])
                kind, body = answer(json.loads(r.read()))
            urllib.request.urlopen(urllib.request.Request(f"{base}/invocation/{request_id}/{kind}",
                                                          data=json.dumps(body).encode(), method="POST"), timeout=10)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def test_runtime_and_load_balancer_to_lambda(self) -> None:
        runtime = standins.LambdaRuntime("arn:aws:lambda:us-east-2:1:function:f", 5)
        self.addCleanup(runtime.close)
        self._function(runtime, lambda e: ("response", {"statusCode": 201, "headers": {"x-path": e["path"]},
                                                        "body": base64.b64encode(b"ok").decode(),
                                                        "isBase64Encoded": True}))
        forward = standins.forward_to_lambda(runtime, "arn:tg", 80)
        status, headers, body = forward("GET", "/ready", {"host": "lb"}, b"")
        self.assertEqual((status, headers["x-path"], body), (201, "/ready", b"ok"))
        self.assertTrue(runtime.ready.is_set())

    def test_load_balancer_passes_a_lambda_target_at_most_1_mb(self) -> None:
        runtime = standins.LambdaRuntime("arn:aws:lambda:us-east-2:1:function:f", 5)
        self.addCleanup(runtime.close)
        forward = standins.forward_to_lambda(runtime, "arn:tg", 80)
        status, _, _ = forward("POST", "/email", {"content-type": "application/json"},
                               b"x" * (standins.ALB_LAMBDA_BODY_LIMIT + 1))
        self.assertEqual(status, 413)
        self.assertEqual(runtime.invocations, 0, "the function is not invoked")
        self.assertLess(rehearse.LARGE_EMAIL_BYTES["lambda"] + 200, standins.ALB_LAMBDA_BODY_LIMIT,
                        "the Lambda rehearsal's large email, envelope included, fits the front door")

    def test_event_source_mapping_deletes_only_what_did_not_fail(self) -> None:
        class FakeSqs:
            def __init__(self) -> None:
                self.batches = [[{"MessageId": "a", "ReceiptHandle": "ra", "Body": "1"},
                                 {"MessageId": "b", "ReceiptHandle": "rb", "Body": "2"}]]
                self.deleted: list[str] = []

            def receive_message(self, **kwargs: object) -> dict:
                return {"Messages": self.batches.pop()} if self.batches else {}

            def delete_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:  # noqa: N803 - boto3's names
                self.deleted += [e["ReceiptHandle"] for e in Entries]
                return {"Successful": Entries}

        runtime = standins.LambdaRuntime("arn:aws:lambda:us-east-2:1:function:w", 5)
        self.addCleanup(runtime.close)
        seen = []

        def answer(event: dict) -> tuple[str, dict]:
            seen.append([r["messageId"] for r in event["Records"]])
            return "response", {"batchItemFailures": [{"itemIdentifier": "b"}]}

        fn = self._function(runtime, answer)
        sqs = FakeSqs()
        esm = standins.EventSourceMapping(sqs, "url", QUEUE, "us-east-2", 10, True, runtime, lambda m: None)
        fn.join(10)
        rehearse.wait_until("the batch handled", lambda: esm.deleted + esm.retried == 2, 10)
        esm.stop()
        self.assertEqual(seen, [["a", "b"]])
        self.assertEqual(sqs.deleted, ["ra"], "the failed record b stays in the queue")


class ReadersTest(unittest.TestCase):
    def test_manifest(self) -> None:
        """Each binary describes its own components; the reader merges them."""
        parts = {
            "queue2bucket": {"health_check_path": "/", "default_port": 8000, "components": {
                name: {"env": {"required": ["A"], "optional": ["B"]}, "aws_actions": [f"x:{name}"]}
                for name in ("api", "worker")}},
            "queue2bucket-api": {"components": {
                "lambda-api": {"env": {"required": ["A"], "optional": []}, "aws_actions": ["x:lambda-api"]}}},
            "queue2bucket-worker": {"components": {
                "lambda-worker": {"env": {"required": ["C"], "optional": []}, "aws_actions": ["x:lambda-worker"]}}},
        }
        with tempfile.TemporaryDirectory() as d:
            for name, manifest in parts.items():
                binary = Path(d) / name
                binary.write_text(f"#!/bin/sh\n[ \"$1\" = manifest ] && cat <<'EOF'\n{json.dumps(manifest)}\nEOF\n")
                binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
            m = rehearse.load_manifest(Path(d))
        self.assertEqual(m.components["worker"], rehearse.Component({"A"}, {"B"}, {"x:worker"}))
        self.assertEqual(m.components["lambda-worker"], rehearse.Component({"C"}, set(), {"x:lambda-worker"}))
        self.assertEqual((m.health_check_path, m.default_port), ("/", 8000))

    def test_readme_states_the_queue_settings(self) -> None:
        claims = rehearse.readme_queue_claims()
        self.assertGreater(claims.visibility_timeout["lambda"], claims.visibility_timeout["fargate"])
        self.assertGreaterEqual(claims.max_receive_count, 1)
        self.assertEqual(claims.dlq_retention_seconds, 14 * 86400)
        self.assertEqual(claims.max_message_size, 262144)

    def test_large_email(self) -> None:
        for size in (300 * 1024, rehearse.LARGE_EMAIL_BYTES["fargate"], rehearse.LARGE_EMAIL_BYTES["lambda"] + 1):
            data = rehearse.large_email_data(size, "test")
            self.assertEqual(len(data), size)
            email = json.loads(data)
            self.assertIn('\\"quoted\\" \\u00e9', data.decode(), "escapes that must come back as sent")
            self.assertEqual(email["extra"], {"n": 1.5})
            self.assertTrue({"email_subject", "email_sender", "email_timestream", "email_content"} <= set(email))

    def test_stored_key_of_each_layout(self) -> None:
        email_id = "019ad3a1-6b00-7a4f-8c2e-3b1f0c9d2e11"  # a UUIDv7 from second 1764487162
        self.assertEqual(rehearse.stored_key("emails/", "time", email_id), f"emails/1764487162-{email_id}.json")
        hashed = rehearse.stored_key("emails/", "hashed", email_id)
        self.assertRegex(hashed, r"^emails/[0-9a-f]{2}/1764487162-" + email_id + r"\.json$")
        self.assertEqual(hashed, rehearse.stored_key("emails/", "hashed", email_id), "a function of the id")
        spreads = {rehearse.stored_key("", "hashed", f"019ad3a1-6b00-7a4f-8c2e-{n:012x}")[:2] for n in range(4096)}
        self.assertEqual(len(spreads), 256, "the first byte of a hash: 256 prefixes")
        with self.assertRaises(rehearse.Failure):
            rehearse.stored_key("emails/", "spread", email_id)

    def test_elf_architecture(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            for machine, arch in ((b"\xb7\x00", "arm64"), (b"\x3e\x00", "x86_64")):
                path = Path(d) / arch
                path.write_bytes(b"\x7fELF" + bytes(14) + machine + bytes(44))
                self.assertEqual(rehearse.elf_architecture(path), arch)
            path = Path(d) / "script"
            path.write_bytes(b"#!/bin/sh\n" + bytes(30))
            with self.assertRaises(rehearse.Failure):
                rehearse.elf_architecture(path)

    def test_variable_defaults(self) -> None:
        self.assertIn(rehearse.variable_default("architecture"), ("arm64", "x86_64"))
        self.assertEqual(rehearse.variable_default("s3_key_layout"), "time")
        with self.assertRaises(rehearse.Failure):
            rehearse.variable_default("no_such_variable")

    def test_every_resource_type_has_a_kind(self) -> None:
        kinds = set(rehearse.KIND_OF.values())
        text = "".join(p.read_text() for p in rehearse.TF_DIR.glob("*.tf"))
        import re
        types = set(re.findall(r'^resource "(aws_[a-z0-9_]+)"', text, re.M))
        self.assertEqual(types - set(rehearse.KIND_OF), set(),
                         "a resource type the rehearsal cannot check after destroy")
        self.assertTrue(kinds)


class WatchdogTest(unittest.TestCase):
    def test_the_deadline_ends_the_rehearsal_and_what_it_started(self) -> None:
        import subprocess
        import time
        here = Path(__file__).resolve().parent
        with tempfile.TemporaryDirectory() as tmp:
            pid_file = Path(tmp) / "child"
            script = (
                "import subprocess, sys, time; from pathlib import Path\n"
                f"sys.path.insert(0, {str(here)!r}); import rehearse\n"
                "child = subprocess.Popen(['sleep', '60'])\n"
                f"Path({str(pid_file)!r}).write_text(str(child.pid))\n"
                f"rehearse.start_watchdog(1, Path({tmp!r}))\n"
                "time.sleep(60)\n"
            )
            started = time.monotonic()
            run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
            self.assertEqual(run.returncode, 1, run.stderr)
            self.assertIn("not finished within 1 s", run.stderr)
            self.assertLess(time.monotonic() - started, 20)
            child = int(pid_file.read_text())
            # Killed, and reaped by init once its parent is gone.
            for _ in range(50):
                try:
                    state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
                except OSError:
                    break  # gone
                if state == "Z":
                    break
                time.sleep(0.1)
            else:
                self.fail(f"the rehearsal's child {child} outlived the deadline")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    unittest.main()

