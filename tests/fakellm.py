"""A tiny OpenAI-compatible HTTP server on 127.0.0.1 for tests.

It stands in for a paid provider, which cannot exist here: LiteLLM talks to it over real
HTTP, so its error paths (500s, timeouts, refused connections) are the real ones. Each
model's behaviour is a script: a reply text, an HTTP error, a delay, or garbage.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Script:
    """What the fake answers for one model: ``reply(request_body) -> text``."""

    reply: Callable[[dict], str] | str = '{"mutators": ["MutateTileSize"], "next_model": "small"}'
    status: int = 200
    delay_s: float = 0.0
    prompt_tokens: int = 100
    completion_tokens: int = 12


@dataclass
class FakeLLMServer:
    scripts: dict[str, Script] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    peak_in_flight: int = 0  # the most requests it was answering at one time
    answered: list[tuple[str, float, float]] = field(default_factory=list)  # (model, start, end) per request
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self) -> float:
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        return time.monotonic()

    def _leave(self, model: str, start: float) -> None:
        with self._lock:
            self._in_flight -= 1
            self.answered.append((model, start, time.monotonic()))

    def overlapping(self) -> list[tuple[str, str]]:
        """The models of every two requests that were being answered at the same time."""
        done = sorted(self.answered, key=lambda a: a[1])
        return [(a[0], b[0]) for i, a in enumerate(done) for b in done[i + 1 :] if b[1] < a[2]]

    def busy_s(self) -> tuple[float, float]:
        """(seconds with at least one request being answered, summed seconds of all requests):
        their ratio is the mean number in flight while any is."""
        total, busy, end = 0.0, 0.0, float("-inf")
        for _, start, stop in sorted(self.answered, key=lambda a: a[1]):
            total += stop - start
            busy += max(0.0, stop - max(start, end))
            end = max(end, stop)
        return busy, total

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, payload):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._send(200, {"status": "ok"})

            def do_POST(self):
                start = fake._enter()
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                try:
                    self._answer(body)
                finally:
                    fake._leave(body.get("model", ""), start)

            def _answer(self, body):
                body["_authorization"] = self.headers.get("authorization", "")
                fake.requests.append(body)
                model = body.get("model", "")
                script = fake.scripts.get(model, Script())
                if script.delay_s:
                    time.sleep(script.delay_s)
                if script.status != 200:
                    # as providers do ("Incorrect API key provided: sk-..."): the key comes back
                    message = f"scripted failure; credentials: {body['_authorization']}"
                    self._send(script.status, {"error": {"message": message, "type": "server_error"}})
                    return
                text = script.reply(body) if callable(script.reply) else script.reply
                self._send(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": model,
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                        ],
                        "usage": {
                            "prompt_tokens": script.prompt_tokens,
                            "completion_tokens": script.completion_tokens,
                            "total_tokens": script.prompt_tokens + script.completion_tokens,
                        },
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv=None) -> None:
    """``python -m tests.fakellm PORT_FILE DELAY_S``: a fake server in its own process (for
    tests that SIGKILL it mid-call); every model answers a valid joint action after DELAY_S,
    and each request is logged to stdout as it arrives."""
    import sys

    port_file, delay = (argv or sys.argv[1:])[:2]
    server = FakeLLMServer()
    original = server.httpd.RequestHandlerClass.do_POST

    def logged(handler):
        print("request", flush=True)
        original(handler)

    server.httpd.RequestHandlerClass.do_POST = logged
    for name in ("small", "mid", "large"):
        server.scripts[name] = Script(delay_s=float(delay))
    with open(port_file, "w") as f:
        f.write(str(server.port))
    server.thread.join()


if __name__ == "__main__":
    main()
