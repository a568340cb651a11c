"""Cancel stops the MLLM sources inside a real ComfyUI: an endpoint that accepts the connection and never answers
is given up within a second or two of ComfyUI's interrupt flag (its socket closed), the endpoint's own deadline
still holds, a 200 answer that is not UTF-8 is named as such, and a local model stops generating at the next
token. Every server is on loopback and stops itself."""

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch

FOUR = ["a hand rests beside a closed box", "the hand lifts one end of the box", "the hand lets go, the box falls",
        "the box lies flat on the table"]


def first_frame():
    return torch.full((1, 64, 64, 3), 0.5)


class Silent:
    """A loopback server that accepts connections, reads what is sent and never answers; it notes when the client
    closes its connection. Bounded: it stops after ``limit`` seconds, or at close()."""

    def __init__(self, limit: float = 30.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.accepted, self.closed_at = 0, []
        self.stop, self.limit = threading.Event(), time.monotonic() + limit
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conns = []
        try:
            while not self.stop.is_set() and time.monotonic() < self.limit:
                try:
                    conn, _ = self.sock.accept()
                    conn.settimeout(0.05)
                    conns.append(conn)
                    self.accepted += 1
                except socket.timeout:
                    pass
                for conn in list(conns):
                    try:
                        if not conn.recv(65536):  # the client closed (or shut down) its end
                            self.closed_at.append(time.monotonic())
                            conns.remove(conn)
                            conn.close()
                    except socket.timeout:
                        pass
                    except OSError:
                        self.closed_at.append(time.monotonic())
                        conns.remove(conn)
        finally:
            for conn in conns:
                conn.close()
            self.sock.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def silent():
    server = Silent()
    yield server
    server.close()


@pytest.fixture
def interrupt(host):
    """Sets ComfyUI's interrupt flag as its /interrupt route does; always cleared afterwards."""
    try:
        yield lambda: host.nodes.interrupt_processing(True)
    finally:
        host.nodes.interrupt_processing(False)


def _in_thread(fn):
    """Run ``fn`` in a thread; returns (thread, outcome) where outcome gets "error" (any BaseException: the
    interrupt exception is one on some ComfyUI versions) or "result", and "ended" (monotonic time)."""
    outcome = {}

    def run():
        try:
            outcome["result"] = fn()
        except BaseException as e:  # noqa: BLE001
            outcome["error"] = e
        finally:
            outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _request_threads():
    return [t for t in threading.enumerate() if t.name == "VA MLLM endpoint request" and t.is_alive()]


def test_cancel_ends_an_endpoint_that_never_answers(host, silent, interrupt):
    import comfy.model_management

    mllm = host.call("VA_MLLMEndpoint", silent.url, "m", "", 120, "", True)[0]
    thread, outcome = _in_thread(lambda: host.call("VA_MLLMStatePrompt", first_frame(), "lift the box", 4, 16, mllm,
                                                   0, 128, 1))
    time.sleep(0.5)
    assert silent.accepted == 1 and thread.is_alive()  # connected, and waiting for the answer
    flagged = time.monotonic()
    interrupt()
    thread.join(10)
    assert not thread.is_alive(), "Cancel did not end the endpoint wait"
    waited = outcome["ended"] - flagged
    print(f"interrupt flag -> exception: {waited:.3f} s")
    assert isinstance(outcome.get("error"), comfy.model_management.InterruptProcessingException), outcome
    assert waited < 2.0
    assert not comfy.model_management.processing_interrupted()  # consumed, as ComfyUI's own checks do
    deadline = time.monotonic() + 2
    while not silent.closed_at and time.monotonic() < deadline:
        time.sleep(0.05)
    assert silent.closed_at and silent.closed_at[0] - flagged < 2.0  # the connection is closed, not left waiting
    while _request_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _request_threads()  # the request's own thread has ended too
    assert silent.accepted == 1  # no retry after Cancel


def test_cancel_before_the_request_sends_nothing(host, silent, interrupt):
    import comfy.model_management

    mllm = host.call("VA_MLLMEndpoint", silent.url, "m", "", 120, "", True)[0]
    interrupt()
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        mllm.generate([{"role": "user", "content": "hi"}], None, 0, 8)
    time.sleep(0.3)
    assert silent.accepted == 0


def test_endpoint_deadline_still_holds(host, silent):
    mllm = host.call("VA_MLLMEndpoint", silent.url, "m", "", 1, "", True)[0]
    start = time.monotonic()
    with pytest.raises(Exception, match=r"could not reach .*/v1/chat/completions \(no answer within 1 s\)"):
        mllm.generate([{"role": "user", "content": "hi"}], None, 0, 8)
    assert time.monotonic() - start < 3.0


class RawServer:
    """A loopback HTTP server answering every POST with ``status`` and the raw bytes ``body``."""

    def __init__(self, status: int, body: bytes):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 5
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_endpoint_answer_that_is_not_utf8_is_named(host):
    body = b'{"choices": [{"message": {"content": "caf\xe9"}}]}'  # Latin-1, not UTF-8
    server = RawServer(200, body)
    try:
        mllm = host.call("VA_MLLMEndpoint", server.url, "m", "", 10, "", True)[0]
        with pytest.raises(Exception, match=r"the endpoint http://127\.0\.0\.1:\d+/v1/chat/completions answered with "
                                            r"bytes that are not UTF-8 text \(byte 0xe9 at position 41\)") as err:
            host.call("VA_MLLMStatePrompt", first_frame(), "lift the box", 4, 16, mllm, 0, 128, 1)
        assert type(err.value).__name__ == "VideoAdapterError"
    finally:
        server.close()


def test_endpoint_errors_are_unchanged(host):
    """An HTTP error status still shows the status and the server's words (read in the request's thread)."""
    server = RawServer(503, json.dumps({"error": "model is loading"}).encode())
    try:
        mllm = host.call("VA_MLLMEndpoint", server.url, "m", "", 10, "", False)[0]
        with pytest.raises(Exception, match=r"answered 503: .*model is loading"):
            mllm.generate([{"role": "user", "content": "hi"}], None, 0, 8)
    finally:
        server.close()


@pytest.fixture(scope="module")
def tiny_qwen(host):
    pytest.importorskip("transformers")
    import folder_paths
    from devtools.tiny_mllm import write_tiny_qwen25_vl

    host.pack_module("nodes.mllm")
    root = os.path.join(host.models_dir, "LLM")
    folder_paths.add_model_folder_path("LLM", root, is_default=True)
    write_tiny_qwen25_vl(os.path.join(root, "tiny", "qwen25-vl"), host.root)
    return "tiny/qwen25-vl"


def test_cancel_stops_local_generation(host, tiny_qwen, interrupt):
    import comfy.model_management

    msgs = host.pack_module("adapters.state_prompts").messages("lift the box", 4)
    mllm = host.call("VA_LoadMLLM", tiny_qwen, "float32", False)[0]
    interrupt()  # pressed before the node runs: the model is not even loaded
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        mllm.generate(msgs, first_frame(), 0, 64)
    assert mllm.patcher is None

    mllm.generate(msgs, first_frame(), 0, 1)  # loads it
    steps = []

    def count(module, args, kwargs):
        steps.append(1)

    hook = mllm.patcher.model.llm.register_forward_pre_hook(count, with_kwargs=True)
    try:
        mllm.generate(msgs, first_frame(), 0, 24)
        uninterrupted = len(steps)
        assert uninterrupted > 3  # the random model does not stop by itself at once

        def cancel_at_first_token(module, args, kwargs):
            if len(steps) == 1:
                interrupt()

        steps.clear()
        cancel_hook = mllm.patcher.model.llm.register_forward_pre_hook(cancel_at_first_token, with_kwargs=True)
        try:
            with pytest.raises(comfy.model_management.InterruptProcessingException):
                mllm.generate(msgs, first_frame(), 0, 24)
        finally:
            cancel_hook.remove()
        assert len(steps) <= 2, f"{len(steps)} forward passes after Cancel (uninterrupted: {uninterrupted})"
        assert not comfy.model_management.processing_interrupted()
    finally:
        hook.remove()
        comfy.model_management.unload_all_models()
