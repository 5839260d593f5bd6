"""A local S3-compatible server for tests and benchmarks: moto's server on 127.0.0.1, with faults on request.

    python tests/s3/server.py [--port 0]

prints ``http://127.0.0.1:PORT`` once it listens, then serves until killed. Point s3fs (and anything built on
botocore) at it with ``AWS_ENDPOINT_URL_S3`` and any credentials (``environment(endpoint)`` gives the variables).

A control API on the same port, JSON over HTTP (``S3Server`` wraps it):

- ``POST /_evtp/faults`` a list of rules, each ``{"method", "path" (a regex searched in /bucket/key), "action",
  "times"}``, tried in order on every request; a matching rule fires ``times`` times (-1: until cleared).
  Actions: ``drop`` sends the response headers and half the body, then closes the connection (a connection
  reset mid-read); ``error`` answers 500 InternalError (a store's 5xx); ``kill`` sends SIGKILL to ``pid`` and
  then answers 500 (a client that dies between two writes).
- ``DELETE /_evtp/faults`` clears them; ``GET /_evtp/faults`` gives how many times each rule fired.
- ``GET /_evtp/requests`` the requests since the last ``DELETE /_evtp/requests`` as ``[method, path, query]``.
- ``POST /_evtp/objects`` ``{"bucket", "objects": {key: text}}`` writes objects straight into moto's store (a
  benchmark's fill of many small files without a request each).
"""

import argparse
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

CONTROL = "/_evtp/"


class Faults:
    """WSGI middleware around moto's app: the request log and the injected faults."""

    def __init__(self, app):
        self.app = app
        self.rules: list[dict] = []
        self.requests: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if path.startswith(CONTROL):
            return self.control(environ, start_response, method, path[len(CONTROL) :])
        with self.lock:
            self.requests.append([method, path, environ.get("QUERY_STRING", "")])
            rule = next((r for r in self.rules if _matches(r, method, path)), None)
            if rule is not None:
                rule["fired"] += 1
        if rule is None:
            return self.app(environ, start_response)
        if rule["action"] == "kill":
            os.kill(int(rule["pid"]), signal.SIGKILL)
        if rule["action"] in ("error", "kill"):
            body = b"<Error><Code>InternalError</Code><Message>injected fault</Message></Error>"
            start_response("500 Internal Server Error", [("Content-Type", "application/xml"), _length(body)])
            return [body]
        return self.drop(environ, start_response)

    def drop(self, environ, start_response):
        """The real response's headers and half its body, then the connection is closed under the client."""
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        body = b"".join(self.app(environ, capture))
        start_response(
            captured["status"], [h for h in captured["headers"] if h[0].lower() != "content-length"] + [_length(body)]
        )
        connection = environ["werkzeug.socket"]

        def half():
            yield body[: len(body) // 2]
            connection.shutdown(socket.SHUT_RDWR)  # the client sees the stream end short of its Content-Length

        return half()

    def control(self, environ, start_response, method, what):
        with self.lock:
            if what == "faults" and method == "POST":
                size = int(environ.get("CONTENT_LENGTH") or 0)
                rules = json.loads(environ["wsgi.input"].read(size))
                self.rules = [{"times": -1, **r, "fired": 0} for r in rules]
                answer = {"rules": len(self.rules)}
            elif what == "faults" and method == "DELETE":
                answer, self.rules = [r["fired"] for r in self.rules], []
            elif what == "faults":
                answer = [r["fired"] for r in self.rules]
            elif what == "objects" and method == "POST":
                size = int(environ.get("CONTENT_LENGTH") or 0)
                answer = _put_objects(json.loads(environ["wsgi.input"].read(size)))
            elif what == "requests" and method == "DELETE":
                answer, self.requests = len(self.requests), []
            elif what == "requests":
                answer = self.requests
            else:
                answer = None
        body = json.dumps(answer).encode()
        start_response(
            "200 OK" if answer is not None else "404 Not Found", [("Content-Type", "application/json"), _length(body)]
        )
        return [body]


def _put_objects(payload: dict) -> int:
    """Objects written straight into moto's store (no HTTP per object): a benchmark's fill of many thousand small
    files in seconds. ``{"bucket": name, "objects": {key: text}}``; the bucket must exist."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key, text in payload["objects"].items():
        backend.put_object(payload["bucket"], key, text.encode())
    return len(payload["objects"])


def _matches(rule: dict, method: str, path: str) -> bool:
    if rule["times"] != -1 and rule["fired"] >= rule["times"]:
        return False
    return rule.get("method", method) == method and re.search(rule["path"], path) is not None


def _length(body: bytes) -> tuple[str, str]:
    return ("Content-Length", str(len(body)))


def serve(port: int = 0) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    app = Faults(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


def environment(endpoint: str) -> dict[str, str]:
    """The variables that point botocore (so s3fs, in this process and in every subprocess) at ``endpoint``."""
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


class S3Server:
    """``server.py`` as a subprocess: its endpoint, buckets, the request log and the fault rules."""

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())], stdout=subprocess.PIPE, text=True
        )
        self.endpoint = self.process.stdout.readline().strip()
        if not self.endpoint.startswith("http://127.0.0.1:"):
            self.process.kill()
            raise RuntimeError("the local S3 server did not start")

    def environment(self) -> dict[str, str]:
        return environment(self.endpoint)

    def _call(self, method: str, what: str, data=None):
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(f"{self.endpoint}{CONTROL}{what}", data=body, method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def faults(self, *rules: dict) -> None:
        self._call("POST", "faults", list(rules))

    def fired(self) -> list[int]:
        return self._call("GET", "faults")

    def clear(self) -> list[int]:
        """Remove the fault rules; returns how many times each fired."""
        return self._call("DELETE", "faults")

    def put_objects(self, bucket: str, objects: dict[str, str]) -> int:
        """Write many small objects server-side (see ``_put_objects``); returns how many."""
        return self._call("POST", "objects", {"bucket": bucket, "objects": objects})

    def requests(self) -> list[list[str]]:
        return self._call("GET", "requests")

    def reset_requests(self) -> None:
        self._call("DELETE", "requests")

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    serve(parser.parse_args().port)
