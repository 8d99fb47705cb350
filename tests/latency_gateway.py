"""A local JSON SMS gateway that answers every request after a fixed latency, one thread per connection.

It speaks the protocol of ``notifications.channels.JsonSmsGatewayBackend`` (``POST {to, from, text,
reference}`` with an ``Idempotency-Key`` header, answering ``{"message_id": ...}``) and is idempotent as a real
gateway is: a key it already took is answered with its first message id and not delivered again. It keeps HTTP/1.1
connections alive, and counts what a test or a benchmark needs: requests, connections, requests in flight.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (key, how many times this key was posted) -> None to answer normally, or (status, headers, body).
Script = Callable[[str, int], tuple[int, dict, dict] | None]


class LatencyGateway:
    def __init__(self, latency: float = 0.1, script: Script | None = None):
        self.latency, self.script = latency, script
        self.lock = threading.Lock()
        self.posts = 0
        self.delivered: dict[str, dict] = {}  # key -> {"message_id", "from", "to", "text"}, first post only
        self.tries: dict[str, int] = {}
        self.post_times: list[float] = []
        self.connections: set[tuple[str, int]] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/sms"

    def start(self) -> LatencyGateway:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive
            # A response goes out in one send with TCP_NODELAY: written as headers then body without it, the
            # client's delayed ACK held the body back and every answer came about 45 ms after its latency.
            disable_nagle_algorithm = True
            wbufsize = -1  # buffered: headers and body leave together when the request is done

            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                key = self.headers.get("Idempotency-Key") or payload.get("reference") or ""
                status, headers, body = gateway.handle(self.client_address, key, payload)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True, name="latency-gateway").start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def handle(self, client: tuple[str, int], key: str, payload: dict) -> tuple[int, dict, dict]:
        with self.lock:
            self.posts += 1
            self.post_times.append(time.monotonic())
            self.connections.add(client[:2])
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.tries[key] = tries = self.tries.get(key, 0) + 1
        try:
            time.sleep(self.latency)
            scripted = self.script(key, tries) if self.script else None
            if scripted is not None:
                return scripted
            with self.lock:
                first = self.delivered.setdefault(
                    key,
                    {
                        "message_id": f"gw-{uuid.uuid4().hex}",
                        "from": payload.get("from"),
                        "to": payload.get("to"),
                        "text": payload.get("text"),
                    },
                )
            return 200, {}, {"message_id": first["message_id"]}
        finally:
            with self.lock:
                self.in_flight -= 1
