"""A SIEM receiver for the tests: a real HTTP server on loopback (werkzeug) that checks
each delivery as a receiver's own code would (the signature over timestamp + body, the
timestamp's age) and keeps what it accepted. It can be stopped and started again on its
port, and told to refuse (answer 500) to play a receiver that is down in another way."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.conftest import free_port


class Receiver:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/ingest"
        self.secret: str | None = None
        self.accepted: list[dict] = []  # the bodies accepted, in order
        self.ids: list[str] = []  # their X-Event-Id
        self.bad_signatures = 0
        self.answer = 200
        self._server = None
        self._thread = None

    def verify(self, request: Request) -> bool:
        timestamp = request.headers.get("X-Timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
            return False
        mac = hmac.new(
            self.secret.encode(), timestamp.encode() + b"." + request.get_data(), hashlib.sha256
        )
        return hmac.compare_digest(
            "sha256=" + mac.hexdigest(), request.headers.get("X-Signature", "")
        )

    def _app(self, environ, start_response):
        request = Request(environ)
        if self.secret is None or not self.verify(request):
            self.bad_signatures += 1
            return Response("bad signature", 401)(environ, start_response)
        if self.answer >= 300:
            return Response("receiver refuses for now", self.answer)(environ, start_response)
        self.accepted.append(json.loads(request.get_data()))
        self.ids.append(request.headers["X-Event-Id"])
        return Response("", 204)(environ, start_response)

    def start(self) -> Receiver:
        self._server = make_server("127.0.0.1", self.port, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def actions(self) -> list[str]:
        return [event["action"] for event in self.accepted]
