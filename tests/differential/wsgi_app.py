"""A plain WSGI app, served by gunicorn's sync worker. Answers 200 on every path (no WebSocket)."""

import json

from recorder import answer, record


def application(environ, start_response):
    # PEP 3333 hands PATH_INFO over as latin-1 text of the decoded bytes.
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    record(
        "gunicorn",
        type="http",
        http_version=environ.get("SERVER_PROTOCOL", ""),
        method=environ.get("REQUEST_METHOD", ""),
        path=path,
        raw_path=environ.get("RAW_URI", ""),
        query=environ.get("QUERY_STRING", ""),
        headers=[[k, v] for k, v in environ.items() if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")],
    )
    received = len(environ["wsgi.input"].read())
    body = json.dumps(answer("gunicorn", path, received)).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
