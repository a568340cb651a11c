"""The multimodal LLMs behind the MLLM nodes: a local transformers model run in a ModelPatcher, an
OpenAI-compatible endpoint and a generating text encoder, each answering the state-prompt question of
``adapters/state_prompts.py``; transformers is imported only when a local model is used. ComfyUI's Cancel stops
each of them: an endpoint's wait within a fraction of a second, a local model after the token it is on."""

from __future__ import annotations

import base64
import io as _io
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import torch

import comfy.model_management
import comfy.model_patcher
import folder_paths
from comfy_api.latest import io

from ...adapters import state_prompts as sp
from ..common import VideoAdapterError

LLM_FOLDER = "LLM"
if LLM_FOLDER not in folder_paths.folder_names_and_paths:
    folder_paths.folder_names_and_paths[LLM_FOLDER] = ([os.path.join(folder_paths.models_dir, LLM_FOLDER)], set())
DTYPES = {"auto": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CANCEL_SLICE = 0.2  # seconds between looks at ComfyUI's Cancel flag while an endpoint is waited for


def _raise_interrupted():
    """Raise ComfyUI's interrupt exception (clearing the flag, as ComfyUI's own checks do)."""
    mm = comfy.model_management
    mm.throw_exception_if_processing_interrupted()
    raise mm.InterruptProcessingException()  # the flag was cleared by someone else in between: still cancelled


def _pil(image: torch.Tensor):
    """The first frame of an IMAGE batch as a PIL image."""
    from PIL import Image

    frame = image[0] if image.ndim == 4 else image
    return Image.fromarray(np.clip(frame[..., :3].cpu().float().numpy() * 255.0, 0, 255).astype(np.uint8))


def model_folders() -> list[str]:
    """Model folders (with a config.json) under models/LLM, up to two levels deep, as relative paths."""
    found = set()
    for root in folder_paths.get_folder_paths(LLM_FOLDER):
        if not os.path.isdir(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            depth = os.path.relpath(dirpath, root).count(os.sep)
            if "config.json" in filenames and dirpath != root:
                found.add(os.path.relpath(dirpath, root).replace(os.sep, "/"))
                dirnames[:] = []
            elif depth >= 1:
                dirnames[:] = []
    return sorted(found)


def _unload(patcher) -> None:
    """Unload one model from ComfyUI's loaded models (newer ComfyUI has a function for it)."""
    mm = comfy.model_management
    if hasattr(mm, "unload_model_and_clones"):
        mm.unload_model_and_clones(patcher)
        return
    for lm in list(mm.current_loaded_models):
        if lm.model is patcher:
            lm.model_unload()
            mm.current_loaded_models.remove(lm)
    mm.soft_empty_cache()


def _cancel_criteria():
    """A transformers stopping criterion that ends generate() at the next token once Cancel is pressed."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            stop = comfy.model_management.processing_interrupted()
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Cancelled()])


class LocalMLLM:
    """A transformers image-text-to-text model in a folder, loaded on first use."""

    def __init__(self, path: str, dtype: str = "auto", keep_loaded: bool = False):
        self.path, self.dtype, self.keep_loaded = path, dtype, keep_loaded
        self.processor = None
        self.patcher = None
        self.label = os.path.basename(path)

    def _load(self):
        try:
            import transformers
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as e:
            raise VideoAdapterError(f"Load MLLM needs the transformers package ({e}); install it into ComfyUI's "
                                    "Python: python -m pip install transformers") from None
        version = tuple(int(p) for p in transformers.__version__.split(".")[:2] if p.isdigit())
        if version < (4, 50):
            raise VideoAdapterError(f"transformers {transformers.__version__} is too old for Load MLLM; 4.50 or "
                                    "newer is needed")
        device = comfy.model_management.text_encoder_device()
        dtype = DTYPES[self.dtype]
        if dtype is None:  # fp16 breaks Qwen2.5-VL (NaN / '!!!' answers) and is slow on CPUs: bf16 or fp32
            dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        dtype_arg = {"dtype": dtype} if version >= (4, 56) else {"torch_dtype": dtype}
        try:
            self.processor = AutoProcessor.from_pretrained(self.path, local_files_only=True)
            model = AutoModelForImageTextToText.from_pretrained(self.path, local_files_only=True, **dtype_arg)
        except (OSError, ValueError, TypeError) as e:
            raise VideoAdapterError(f"model_folder: {self.path} could not be loaded as an image-text-to-text "
                                    f"model ({e})") from None
        model.eval().requires_grad_(False)
        holder = torch.nn.Module()  # ModelPatcher sets .device on its model; transformers models do not allow it
        holder.llm = model
        self.patcher = comfy.model_patcher.ModelPatcher(
            holder, load_device=comfy.model_management.text_encoder_device(),
            offload_device=comfy.model_management.text_encoder_offload_device())

    def generate(self, messages: list[dict], image, seed: int, max_tokens: int, schema: dict | None = None) -> str:
        comfy.model_management.throw_exception_if_processing_interrupted()  # cancelled: do not even load
        if self.patcher is None:
            self._load()
        msgs = []
        for m in messages:
            content = m["content"]
            if isinstance(content, list):
                content = [({"type": "image", "image": _pil(image)} if part.get("type") == "image" else part)
                           for part in content if part.get("type") != "image" or image is not None]
            else:
                content = [{"type": "text", "text": content}]
            msgs.append({"role": m["role"], "content": content})
        comfy.model_management.load_models_gpu([self.patcher], force_full_load=True)
        try:
            model = self.patcher.model.llm
            inputs = self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                                        return_dict=True, return_tensors="pt")
            inputs = {k: (v.to(self.patcher.load_device) if torch.is_tensor(v) else v) for k, v in inputs.items()}
            torch.manual_seed(int(seed))
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=int(max_tokens), do_sample=False,
                                     stopping_criteria=_cancel_criteria())
            comfy.model_management.throw_exception_if_processing_interrupted()  # stopped by Cancel, not finished
            answer = out[:, inputs["input_ids"].shape[1]:]
            return self.processor.batch_decode(answer, skip_special_tokens=True)[0]
        finally:
            if not self.keep_loaded:
                _unload(self.patcher)


class _HTTPStatus(Exception):
    """An endpoint's answer with an HTTP error status; ``detail``: its body (read while the request is waited for)."""

    def __init__(self, code: int, detail: str):
        super().__init__(code, detail)
        self.code, self.detail = code, detail


class _Request:
    """One urllib request run in a daemon thread and waited for in short slices, so that ComfyUI's Cancel ends the
    wait within a fraction of a second (a single HTTP answer cannot be read in slices through urllib, and a server
    can accept the connection and never answer). On Cancel or after ``timeout`` seconds the request's sockets are
    shut down, which ends the thread's blocking read; a connection still being opened is closed as soon as it is
    open. urllib keeps doing the rest: https, proxies from the environment, redirects."""

    def __init__(self, req: urllib.request.Request, timeout: int):
        self.req, self.timeout = req, timeout
        self.lock = threading.Lock()
        self.sockets, self.cancelled = [], False
        self.done = threading.Event()
        self.data = self.error = None

    # --- the request's thread ---------------------------------------------------------------------------
    def _connection(self, http_class):
        """``http_class`` with a connect() that records the socket it opens (or closes it when cancelled)."""
        request = self

        def make(*args, **kwargs):
            conn = http_class(*args, **kwargs)
            connect = conn.connect

            def connect_recorded():
                connect()
                with request.lock:
                    request.sockets.append(conn.sock)
                    cancelled = request.cancelled
                if cancelled:
                    _shut(conn.sock)
                    raise ConnectionAbortedError("cancelled")

            conn.connect = connect_recorded
            return conn

        return make

    def _opener(self):
        request = self

        class Recorded:
            def do_open(self, http_class, req, **kwargs):
                return super().do_open(request._connection(http_class), req, **kwargs)

        class HTTP(Recorded, urllib.request.HTTPHandler):
            pass

        class HTTPS(Recorded, urllib.request.HTTPSHandler):
            pass

        return urllib.request.build_opener(HTTP, HTTPS)

    def _run(self):
        try:
            # the sockets' own timeout is a little longer than the wait's deadline, which thus always names
            # the timeout (the sockets are shut down when it passes)
            with self._opener().open(self.req, timeout=self.timeout + 2) as resp:
                self.data = resp.read()
        except urllib.error.HTTPError as e:
            try:
                detail = e.read().decode("utf-8", "replace")
            except Exception:  # noqa: BLE001 - the status alone still says what went wrong
                detail = ""
            self.error = _HTTPStatus(e.code, detail)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            self.error = e
        finally:
            self.done.set()

    # --- the waiting (node's) thread --------------------------------------------------------------------
    def _cancel(self):
        with self.lock:
            self.cancelled = True
            sockets = list(self.sockets)
        for sock in sockets:
            _shut(sock)

    def wait(self) -> bytes:
        """The answer's body; raises ``_HTTPStatus`` for an HTTP error status, urllib's errors as urlopen does,
        ComfyUI's interrupt exception on Cancel."""
        mm = comfy.model_management
        mm.throw_exception_if_processing_interrupted()
        threading.Thread(target=self._run, name="VA MLLM endpoint request", daemon=True).start()
        deadline = time.monotonic() + self.timeout
        try:
            while not self.done.wait(CANCEL_SLICE):
                if mm.processing_interrupted():
                    self._cancel()
                    _raise_interrupted()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no answer within {self.timeout} s")
        finally:
            if not self.done.is_set():
                self._cancel()
        if self.error is not None:
            raise self.error
        return self.data


def _shut(sock) -> None:
    """Shut a socket down (ending a read blocked on it in another thread) and close it."""
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class EndpointMLLM:
    """An OpenAI-compatible chat-completions endpoint."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "", timeout: int = 120, keep_alive: str = "",
                 structured_output: bool = True):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key_env, self.timeout = model, api_key_env, int(timeout)
        self.keep_alive, self.structured_output = keep_alive, structured_output
        self.label = f"{model} at {base_url}"

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise VideoAdapterError(f"api_key_env: the environment variable {self.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        data = _Request(req, self.timeout).wait()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise VideoAdapterError(
                f"the endpoint {self.url} answered with bytes that are not UTF-8 text (byte 0x{data[e.start]:02x} at "
                f"position {e.start}); OpenAI-compatible servers answer in UTF-8 JSON: is base_url the server's "
                "OpenAI-compatible API (it usually ends in /v1)?") from None
        try:
            return json.loads(text, strict=False)
        except json.JSONDecodeError as e:
            raise VideoAdapterError(
                f"the endpoint {self.url} answered text that is not JSON ({e.msg} at position {e.pos}: "
                f"{text[:80]!r}); is base_url the server's OpenAI-compatible API (it usually ends in /v1)?") from None

    def generate(self, messages: list[dict], image, seed: int, max_tokens: int, schema: dict | None = None) -> str:
        msgs = []
        for m in messages:
            content = m["content"]
            if isinstance(content, list):
                parts = []
                for part in content:
                    if part.get("type") == "image":
                        if image is None:
                            continue
                        buf = _io.BytesIO()
                        _pil(image).save(buf, format="PNG")
                        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
                        parts.append({"type": "image_url", "image_url": {"url": url}})
                    else:
                        parts.append(part)
                content = parts
            msgs.append({"role": m["role"], "content": content})
        body = {"model": self.model, "messages": msgs, "max_tokens": int(max_tokens), "temperature": 0,
                "seed": int(seed), "stream": False}
        if self.keep_alive != "":
            body["keep_alive"] = int(self.keep_alive) if self.keep_alive.lstrip("-").isdigit() else self.keep_alive
        formats = []
        if self.structured_output and schema is not None:
            # OpenAI's form (vLLM, LM Studio, Ollama, llama.cpp's own server), then llama-cpp-python's form
            formats = [{"type": "json_schema", "json_schema": {"name": "states", "schema": schema, "strict": True}},
                       {"type": "json_object", "schema": schema}]
        formats.append(None)  # a server without structured output: ask in words only
        for fmt in formats:
            request = dict(body, response_format=fmt) if fmt is not None else body
            try:
                reply = self._post(request)
                break
            except _HTTPStatus as e:
                detail = e.detail
                if "keep_alive" in detail and "keep_alive" in body:  # a server that does not know Ollama's field
                    body.pop("keep_alive")
                    request = dict(body, response_format=fmt) if fmt is not None else body
                    try:
                        reply = self._post(request)
                        break
                    except _HTTPStatus as e2:
                        e, detail = e2, e2.detail
                refused_format = fmt is not None and (e.code in (400, 422) or "response_format" in detail)
                if not refused_format:
                    raise VideoAdapterError(f"the endpoint {self.url} answered {e.code}: {detail[:300]}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                raise VideoAdapterError(f"could not reach {self.url} ({getattr(e, 'reason', e)}); is the server "
                                        "running and base_url right (it usually ends in /v1)?") from None
        try:
            return reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise VideoAdapterError(f"the endpoint {self.url} answered without a message: {str(reply)[:300]}") from None


class ClipMLLM:
    """A ComfyUI text encoder that can generate text (newer ComfyUI: ``clip.generate``, e.g. Qwen3-VL or Gemma
    text encoders), used as the multimodal LLM. The encoder's own chat template wraps the prompt; the system
    prompt, the request and any retry are written into that one prompt."""

    def __init__(self, clip):
        self.clip = clip
        self.label = "text encoder"

    @staticmethod
    def _prompt(messages: list[dict]) -> str:
        parts = []
        for m in messages:
            content = m["content"]
            text = content if isinstance(content, str) else "\n".join(
                p.get("text", "") for p in content if p.get("type") == "text")
            if m["role"] == "assistant":
                text = f"(your previous answer) {text}"
            parts.append(text)
        return "\n\n".join(p for p in parts if p)

    def generate(self, messages: list[dict], image, seed: int, max_tokens: int, schema: dict | None = None) -> str:
        try:
            first = image[:1] if image is not None else None  # the first frame, as the other sources send
            tokens = self.clip.tokenize(self._prompt(messages), image=first, min_length=1)
            ids = self.clip.generate(tokens, do_sample=False, max_length=int(max_tokens), seed=int(seed))
            comfy.model_management.throw_exception_if_processing_interrupted()  # ComfyUI's progress hook stops it
        except (AttributeError, NotImplementedError, TypeError) as e:
            raise VideoAdapterError(f"clip: this text encoder cannot generate text with an image ({e}); connect a "
                                    "generating multimodal text encoder (Qwen3-VL, Gemma 3), or use Load MLLM / "
                                    "MLLM Endpoint") from None
        return self.clip.decode(ids)


def ask_states(mllm, image, instruction: str, n: int, seed: int, max_tokens: int, system_prompt: str = ""):
    """``(states, raw answers)``: one request, and one retry that tells the model what was wrong."""
    msgs = sp.messages(instruction, n, system_prompt or None, with_image=image is not None)
    raw = [mllm.generate(msgs, image, seed, max_tokens, sp.json_schema(n))]
    states = sp.parse_states(raw[0])
    if len(states) != n:
        retry = msgs + [{"role": "assistant", "content": raw[0]},
                        {"role": "user", "content": [{"type": "text", "text": sp.retry_prompt(n, len(states))}]}]
        raw.append(mllm.generate(retry, image, seed, max_tokens, sp.json_schema(n)))
        states = sp.parse_states(raw[-1])
    try:
        return sp.exactly(states, n, raw[-1]), raw
    except sp.StatePromptError as e:
        raise VideoAdapterError(str(e)) from None
