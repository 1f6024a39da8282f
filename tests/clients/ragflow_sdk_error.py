"""RAGFlow's own Python SDK (ragflow-sdk from PyPI) against the gateway with a token it does not know.

argv: base URL, CA bundle. The SDK passes no `verify=`, so the CA goes in through REQUESTS_CA_BUNDLE.
Prints one JSON line for the Rust test: the exception's type and text."""
import json
import os
import sys

BASE, CA = sys.argv[1], sys.argv[2]
os.environ["REQUESTS_CA_BUNDLE"] = CA

from ragflow_sdk import RAGFlow  # noqa: E402  (after the CA bundle is set)

rag = RAGFlow(api_key="agt_bogus", base_url=BASE)
try:
    rag.list_datasets()
except Exception as exc:  # the SDK raises a bare Exception(res["message"])
    print(json.dumps({"type": type(exc).__name__, "text": str(exc)}))
    sys.exit(0)
print(json.dumps({"type": None, "text": "list_datasets succeeded with a bogus key"}))
