"""Schemathesis hooks for the API's OpenAPI run (scripts/schemathesis.sh).

A generated body carries a random `token`, so every schema-valid request would
be answered 401 and the accepting path never exercised. The expected token is
given to this run in SCHEMATHESIS_TOKEN; a body whose `token` is a string gets
it, while bodies whose `token` is deliberately ill-typed (negative cases) are
left as generated.
"""

import os

import schemathesis

TOKEN = os.environ["SCHEMATHESIS_TOKEN"]


@schemathesis.hook
def map_body(context, body):
    if isinstance(body, dict) and isinstance(body.get("token"), str):
        body["token"] = TOKEN
    return body
