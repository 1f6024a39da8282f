"""RAGFlow's own Python SDK (ragflow-sdk from PyPI) through the gateway with an authgate `agt_` token.

argv: base URL, CA bundle, API key. Lists datasets and creates a chat; prints one JSON line:
{"datasets": [names], "chat": {"id", "name"}} or {"error": {"type", "text"}} at the first failure."""
import json
import os
import sys

BASE, CA, KEY = sys.argv[1], sys.argv[2], sys.argv[3]
os.environ["REQUESTS_CA_BUNDLE"] = CA

from ragflow_sdk import RAGFlow  # noqa: E402  (after the CA bundle is set)

rag = RAGFlow(api_key=KEY, base_url=BASE)
try:
    datasets = rag.list_datasets()
    chat = rag.create_chat("helper", dataset_ids=[d.id for d in datasets])
except Exception as exc:  # the SDK raises a bare Exception(res["message"])
    print(json.dumps({"error": {"type": type(exc).__name__, "text": str(exc)}}))
    sys.exit(0)
print(json.dumps({"datasets": [d.name for d in datasets], "chat": {"id": chat.id, "name": chat.name}}))
