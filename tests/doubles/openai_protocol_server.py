"""Protocol test double for a vLLM GPU server: a small real HTTP server speaking the OpenAI chat API.

No LLM weights can run on the test machines, so the llm service's OpenAI-compatible path is tested
against this server instead. It is NOT a model: it streams a scripted answer over the same wire format
vLLM uses (`POST /v1/chat/completions` with `stream: true` → `text/event-stream` of
`chat.completion.chunk` objects, an optional usage chunk, then `data: [DONE]`), and it records every
request so tests can check the prompt. By default it "answers" with the first fact (`A: ...` line) of
the system prompt, like a well-behaved grounded model, or with `reply` when a test sets it.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OpenAIProtocolServer:
    """Start with `with OpenAIProtocolServer() as server:`; it listens on a free port of 127.0.0.1."""

    def __init__(self, *, api_key: str = "", delta_chars: int = 6) -> None:
        self.api_key = api_key
        self.delta_chars = delta_chars
        self.reply: str | None = None
        self.delay_s = 0.0  # pause before each delta, to test deadlines
        self.status = 200  # anything else: an error response, as vLLM sends for a bad request
        self.requests: list[dict[str, Any]] = []
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> OpenAIProtocolServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    def answer_for(self, body: dict[str, Any]) -> str:
        if self.reply is not None:
            return self.reply
        system = next((m["content"] for m in body.get("messages", []) if m.get("role") == "system"), "")
        fact = re.search(r"^\s*A: (.+)$", system, re.M)
        return fact.group(1) if fact else "I'm sorry, I don't know."

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _json(self, status: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": "voicebot", "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": "not found", "code": 404}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path != "/v1/chat/completions":
                    self._json(404, {"error": {"message": "not found", "code": 404}})
                    return
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._json(401, {"error": {"message": "invalid api key", "code": 401}})
                    return
                server.requests.append(body)
                if server.status != 200:
                    self._json(
                        server.status, {"error": {"message": "scripted failure", "code": server.status}}
                    )
                    return
                text = server.answer_for(body)
                if not body.get("stream"):
                    self._json(200, _completion(body, text))
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client gave up: fine
                    self._stream(body, text)

            def _send(self, payload: str) -> None:
                data = f"data: {payload}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _stream(self, body: dict[str, Any], text: str) -> None:
                cid, model = f"chatcmpl-{uuid.uuid4().hex}", body.get("model", "")
                step = max(1, server.delta_chars)
                pieces = [text[i : i + step] for i in range(0, len(text), step)]
                self._send(json.dumps(_chunk(cid, model, {"role": "assistant", "content": ""}, None)))
                for piece in pieces:
                    if server.delay_s:
                        time.sleep(server.delay_s)
                    self._send(json.dumps(_chunk(cid, model, {"content": piece}, None)))
                self._send(json.dumps(_chunk(cid, model, {}, "stop")))
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage = _usage(body, text)
                    self._send(
                        json.dumps(
                            {
                                "id": cid,
                                "object": "chat.completion.chunk",
                                "model": model,
                                "choices": [],
                                "usage": usage,
                            }
                        )
                    )
                self._send("[DONE]")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        return Handler


def _chunk(cid: str, model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "model": body.get("model", ""),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": _usage(body, text),
    }
