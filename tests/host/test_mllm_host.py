"""MLLM state prompts inside a real ComfyUI: a tiny random-weight Qwen2.5-VL from a local folder (through
ComfyUI's model management), an OpenAI-compatible endpoint on loopback (backed by a scripted answer, or by
the tiny model itself), the retry, and the errors."""

import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch

FOUR = ["a hand rests beside a closed box", "the hand lifts one end of the box", "the hand lets go, the box falls",
        "the box lies flat on the table"]


@pytest.fixture(scope="module")
def mllm_nodes(host):
    return host.pack_module("nodes.mllm")


@pytest.fixture(scope="module")
def tiny_qwen(host, mllm_nodes):
    pytest.importorskip("transformers")
    import folder_paths
    from devtools.tiny_mllm import write_tiny_qwen25_vl

    root = os.path.join(host.models_dir, "LLM")
    folder_paths.add_model_folder_path("LLM", root, is_default=True)
    write_tiny_qwen25_vl(os.path.join(root, "tiny", "qwen25-vl"), host.root)
    return "tiny/qwen25-vl"


def first_frame(seed=0):
    """A flat-coloured 64x64 frame (colour by seed): distinct frames give the tiny model distinct inputs."""
    colour = torch.rand(3, generator=torch.Generator().manual_seed(seed))
    return colour.reshape(1, 1, 1, 3).expand(1, 64, 64, 3).clone()


class Scripted:
    """A VA_MLLM that answers from a list, recording what it was asked."""

    def __init__(self, answers):
        self.answers, self.calls = list(answers), []

    def generate(self, messages, image, seed, max_tokens, schema=None):
        self.calls.append((messages, image, seed, max_tokens, schema))
        return self.answers.pop(0)


def test_local_model_is_listed_deterministic_and_unloaded(host, mllm_nodes, tiny_qwen):
    import comfy.model_management

    assert tiny_qwen in mllm_nodes.model_folders()
    mllm = host.call("VA_LoadMLLM", tiny_qwen, "float32", False)[0]
    msgs = host.pack_module("adapters.state_prompts").messages("lift the box", 4)
    a = mllm.generate(msgs, first_frame(), 0, 24)
    b = mllm.generate(msgs, first_frame(), 0, 24)
    assert isinstance(a, str) and a == b  # greedy decoding: same inputs, same answer
    assert a != mllm.generate(msgs, first_frame(1), 0, 24)  # the image reaches the model
    assert not any(lm.model is mllm.patcher for lm in comfy.model_management.current_loaded_models)
    kept = host.call("VA_LoadMLLM", tiny_qwen, "float32", True)[0]
    kept.generate(msgs, first_frame(), 0, 8)
    assert any(lm.model is kept.patcher for lm in comfy.model_management.current_loaded_models)
    comfy.model_management.unload_all_models()


def test_random_model_answer_is_refused_with_the_answer_shown(host, tiny_qwen):
    mllm = host.call("VA_LoadMLLM", tiny_qwen, "float32", False)[0]
    with pytest.raises(Exception, match="instead of 4, also after a retry. Its answer was"):
        host.call("VA_MLLMStatePrompt", first_frame(), "lift the box, then let it drop", 4, 33, mllm, 0, 32)


def test_states_schedule_and_one_retry(host):
    bad = "1. " + FOUR[0] + "\n2. " + FOUR[1]
    good = json.dumps({"states": FOUR})
    mllm = Scripted([bad, good])
    states, schedule, raw = host.call("VA_MLLMStatePrompt", first_frame(), "lift one end of a tablet box, then let "
                                      "it drop", 4, 33, mllm, 5, 256)
    assert states.splitlines() == FOUR
    assert schedule.splitlines()[1] == f'"5": "{FOUR[1]}",'
    assert bad in raw and good in raw and len(mllm.calls) == 2
    retry_msgs = mllm.calls[1][0]
    assert retry_msgs[-2] == {"role": "assistant", "content": bad} and "exactly 4" in retry_msgs[-1]["content"][0]["text"]
    assert mllm.calls[0][4]["properties"]["states"]["minItems"] == 4 and mllm.calls[0][2] == 5


class _Server:
    """A loopback chat-completions server; ``answer(body) -> (status, dict)``."""

    def __init__(self, answer):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, dict(self.headers), body))
                status, reply = answer(body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _reply(text):
    return {"choices": [{"message": {"role": "assistant", "content": text}}]}


def test_endpoint_protocol(host, monkeypatch):
    monkeypatch.setenv("VA_TEST_KEY", "secret")
    with _Server(lambda body: (200, _reply(json.dumps({"states": FOUR})))) as server:
        mllm = host.call("VA_MLLMEndpoint", server.url, "qwen2.5vl:3b", "VA_TEST_KEY", 30, "0", True)[0]
        states, _, _ = host.call("VA_MLLMStatePrompt", first_frame(), "lift the box", 4, 16, mllm, 3, 128, 1)
    assert states.splitlines() == FOUR
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer secret"
    assert body["model"] == "qwen2.5vl:3b" and body["keep_alive"] == 0 and body["seed"] == 3 and body["temperature"] == 0
    assert body["response_format"]["json_schema"]["schema"]["properties"]["states"]["maxItems"] == 4
    image = body["messages"][1]["content"][0]
    assert image["type"] == "image_url" and base64.b64decode(image["image_url"]["url"].split(",", 1)[1])[:4] == b"\x89PNG"


def test_endpoint_without_structured_output_and_errors(host):
    def answer(body):
        if "response_format" in body:
            return 400, {"error": "response_format is not supported"}
        return 200, _reply("Sure:\n- " + "\n- ".join(FOUR))

    with _Server(answer) as server:
        mllm = host.call("VA_MLLMEndpoint", server.url, "m", "", 30, "", True)[0]
        states, _, _ = host.call("VA_MLLMStatePrompt", first_frame(), "lift the box", 4, 16, mllm, 0, 128, 1)
    assert states.splitlines() == FOUR and "keep_alive" not in server.requests[-1][2]
    gone = host.call("VA_MLLMEndpoint", server.url, "m", "", 2, "", True)[0]
    with pytest.raises(Exception, match="could not reach"):
        gone.generate([{"role": "user", "content": "hi"}], None, 0, 8)
    with pytest.raises(Exception, match="api_key_env"):
        host.call("VA_MLLMEndpoint", server.url, "m", "VA_NOT_SET_ANYWHERE", 2, "", True)[0].generate(
            [{"role": "user", "content": "hi"}], None, 0, 8)


def test_endpoint_backed_by_the_tiny_model(host, tiny_qwen):
    """The whole protocol with a real model behind it: the tiny model's answer comes back through HTTP."""
    local = host.call("VA_LoadMLLM", tiny_qwen, "float32", True)[0]

    def answer(body):
        msgs = [{"role": m["role"], "content": [({"type": "image"} if p.get("type") == "image_url" else p)
                                                 for p in m["content"]] if isinstance(m["content"], list) else m["content"]}
                for m in body["messages"]]
        return 200, _reply(local.generate(msgs, first_frame(), body["seed"], body["max_tokens"]))

    import comfy.model_management

    try:
        with _Server(answer) as server:
            remote = host.call("VA_MLLMEndpoint", server.url, "tiny", "", 60, "", True)[0]
            msgs = host.pack_module("adapters.state_prompts").messages("lift the box", 4)
            assert remote.generate(msgs, first_frame(), 0, 16) == local.generate(msgs, first_frame(), 0, 16)
    finally:
        comfy.model_management.unload_all_models()


def test_endpoint_falls_back_to_llama_cpp_python_structured_output(host):
    """llama-cpp-python's server refuses OpenAI's json_schema form with a 500 naming response_format, and takes
    {"type": "json_object", "schema": ...} instead (seen against its real server)."""
    def answer(body):
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return 500, {"error": {"message": "body.response_format.type: Input should be 'text' or 'json_object'"}}
        assert fmt == {"type": "json_object", "schema": fmt["schema"]} and fmt["schema"]["properties"]["states"]
        return 200, _reply(json.dumps({"states": FOUR}))

    with _Server(answer) as server:
        mllm = host.call("VA_MLLMEndpoint", server.url, "m", "", 30, "", True)[0]
        states, _, _ = host.call("VA_MLLMStatePrompt", first_frame(), "lift the box", 4, 16, mllm, 0, 128, 1)
    assert states.splitlines() == FOUR and [r[2]["response_format"]["type"] for r in server.requests] == \
        ["json_schema", "json_object"]


class GeneratingClip:
    """Stands in for a newer ComfyUI's generating text encoder: records what it is given."""

    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def tokenize(self, text, image=None, min_length=1, **kw):
        self.calls.append(("tokenize", text, image))
        return {"text": text}

    def generate(self, tokens, do_sample=True, max_length=256, seed=None, **kw):
        self.calls.append(("generate", do_sample, max_length, seed))
        return [1, 2, 3]

    def decode(self, ids, skip_special_tokens=True):
        return self.answer


def test_text_encoder_source(host, tiny):
    clip = GeneratingClip(json.dumps({"states": FOUR}))
    mllm = host.call("VA_MLLMFromCLIP", clip)[0]
    states, _, _ = host.call("VA_MLLMStatePrompt", first_frame(), "lift the box", 4, 16, mllm, 9, 200, 1)
    assert states.splitlines() == FOUR
    kind, text, image = clip.calls[0]
    assert kind == "tokenize" and "exactly 4" in text and "You plan short videos" in text and image is not None
    assert clip.calls[1] == ("generate", False, 200, 9)  # greedy, the node's max_tokens and seed
    with pytest.raises(Exception, match="cannot generate"):
        host.call("VA_MLLMFromCLIP", object())


def test_endpoint_without_keep_alive_support(host):
    """A strict server that refuses Ollama's keep_alive field gets the request again without it."""
    def answer(body):
        if "keep_alive" in body:
            return 400, {"error": {"message": "Unrecognized request argument supplied: keep_alive"}}
        return 200, _reply(json.dumps({"states": FOUR}))

    with _Server(answer) as server:
        mllm = host.call("VA_MLLMEndpoint", server.url, "m", "", 30, "0", True)[0]
        states, _, _ = host.call("VA_MLLMStatePrompt", first_frame(), "lift the box", 4, 16, mllm, 0, 128, 1)
    assert states.splitlines() == FOUR
    assert server.requests[-1][2]["response_format"]["type"] == "json_schema"  # structured output kept
