"""``--panel``: a control page in the browser, served on 127.0.0.1 only.

A standard-library HTTP server on a thread of its own. Every request must carry the random
token of the printed URL (``?token=...``); a request without it, with another token, from a
page of another origin (its ``Origin`` header) or for another host name (``Host``, against DNS
rebinding) gets 403. Routes:

- ``GET /`` the page (:mod:`stream_sep.live.panel.page`, one file, no outside resources);
- ``GET /state`` the latest numbers as JSON;
- ``GET /events`` server-sent events: the same JSON each time the live command's main loop
  publishes (every ``UPDATE_SECONDS``);
- ``POST /control`` a JSON object with one or more of the options the table marks for the
  panel (:data:`stream_sep.settings.PANEL_FIELDS`: ``mode``, ``vocal_level``, ``key``,
  ``mic_level``): applied through :class:`stream_sep.live.controls.Controls`, the path the keys use
  (the audio thread never waits on the server). A bad value is a 400 whose body is one line
  naming it, and nothing changes (every value is checked before any is applied).
"""

from __future__ import annotations

import hmac
import http.server
import json
import logging
import secrets
import threading
import urllib.parse

from stream_sep.errors import UserError
from stream_sep.live.controls import Controls
from stream_sep.live.panel.page import page
from stream_sep.settings import PANEL_FIELDS

log = logging.getLogger(__name__)

UPDATE_SECONDS = 0.1  # the live loop's tick while the panel is on: 10 updates a second
HOST = "127.0.0.1"
_MAX_BODY = 1024
_KEEPALIVE_SECONDS = 5.0


class Panel:
    """The panel's server. ``publish(numbers)`` (main loop) hands it the live numbers."""

    def __init__(self, controls: Controls, port: int = 0):
        self.controls = controls
        self.token = secrets.token_urlsafe(18)
        self._numbers: dict = {}
        self._version = 0
        self._changed = threading.Condition()
        self._closed = False
        self.events_sent = 0
        self.server = http.server.ThreadingHTTPServer((HOST, port), _handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.page = page(self.token).encode()
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="stream-sep-panel", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/?token={self.token}"

    @property
    def origins(self) -> set[str]:
        return {f"http://{HOST}:{self.port}", f"http://localhost:{self.port}"}

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ numbers
    def publish(self, numbers: dict) -> None:
        with self._changed:
            self._numbers = numbers
            self._version += 1
            self._changed.notify_all()

    def state(self) -> dict:
        """The latest numbers, with the controls' current values (changed since, maybe)."""
        with self._changed:
            numbers = dict(self._numbers)
        numbers.update(self.controls.state())
        return numbers

    def wait_for_update(self, seen: int, timeout: float) -> tuple[int, dict | None]:
        """(version, numbers) once a version newer than ``seen`` is published; numbers is
        None on timeout or when the panel closes."""
        with self._changed:
            self._changed.wait_for(lambda: self._version > seen or self._closed, timeout)
            if self._closed or self._version <= seen:
                return seen, None
            return self._version, dict(self._numbers)

    @property
    def version(self) -> int:
        """How many snapshots were published so far."""
        return self._version

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ controls
    def control(self, request) -> dict:
        """Apply a POSTed object; UserError (one line) for anything wrong, nothing applied."""
        if not isinstance(request, dict) or not request:
            raise UserError(f"send a JSON object with one or more of {', '.join(PANEL_FIELDS)}")
        unknown = [name for name in request if name not in PANEL_FIELDS]
        if unknown:
            raise UserError(f"unknown control {unknown[0]!r}; allowed: {', '.join(PANEL_FIELDS)}")
        self.controls.check(request)
        for name in PANEL_FIELDS:
            if name in request:
                getattr(self.controls, f"set_{name}")(request[name])
        return self.state()


def _handler(panel: Panel):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "stream-sep-panel"
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            log.debug("panel: " + format, *args)

        def do_GET(self):
            route = self._allowed()
            if route == "/":
                self._send(200, panel.page, "text/html; charset=utf-8")
            elif route == "/state":
                self._json(200, panel.state())
            elif route == "/events":
                self._events()
            elif route is not None:
                self._send(404, b"no such page\n", "text/plain")

        def do_POST(self):
            route = self._allowed()
            if route is None:
                return
            if route != "/control":
                self._send(404, b"no such page\n", "text/plain")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= _MAX_BODY:
                self._send(400, b"send a JSON object of at most 1 KB\n", "text/plain")
                return
            try:
                request = json.loads(self.rfile.read(length))
                self._json(200, panel.control(request))
            except (ValueError, UserError) as error:
                reason = str(error) if isinstance(error, UserError) else "the body is not JSON"
                self._send(400, (reason + "\n").encode(), "text/plain; charset=utf-8")

        def _allowed(self) -> str | None:
            """The route, or None after answering 403 (token, origin or host wrong)."""
            parsed = urllib.parse.urlsplit(self.path)
            given = urllib.parse.parse_qs(parsed.query).get("token", [""])[0]
            origin = self.headers.get("Origin")
            host = self.headers.get("Host", "")
            hosts = {o.split("//", 1)[1] for o in panel.origins}
            if (
                not hmac.compare_digest(given.encode(), panel.token.encode())
                or (origin is not None and origin not in panel.origins)
                or host not in hosts
            ):
                self._send(403, b"forbidden\n", "text/plain")
                return None
            return parsed.path

        def _events(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            seen = panel.version
            try:
                self._event(panel.state())
                while not panel.closed:
                    seen, numbers = panel.wait_for_update(seen, _KEEPALIVE_SECONDS)
                    if numbers is None:
                        if panel.closed:
                            return
                        self.wfile.write(b": keep-alive\n\n")
                        self.wfile.flush()
                        continue
                    numbers.update(panel.controls.state())
                    self._event(numbers)
            except OSError:  # the page went away
                return

        def _event(self, numbers: dict) -> None:
            self.wfile.write(b"data: " + json.dumps(numbers).encode() + b"\n\n")
            self.wfile.flush()
            panel.events_sent += 1

        def _json(self, status: int, value) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.end_headers()
            self.wfile.write(body)

    return Handler
