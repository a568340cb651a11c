"""MLLM State Prompt against llama.cpp's own OpenAI-compatible server, end to end, without downloads:

    pip install "llama-cpp-python[server]" gguf        # builds llama.cpp (several minutes on 2 cores)
    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/mllm_llamacpp_check.py

Writes a tiny random-weight qwen2-architecture GGUF with the real Qwen2.5 vocabulary (from the tokenizer files
ComfyUI ships), serves it with ``python -m llama_cpp.server`` on loopback, runs MLLM Endpoint + MLLM State
Prompt against it in an in-process ComfyUI, prints what came back and how long it took, and stops the server.
A random model writes nonsense; what this checks is the protocol: structured output (llama-cpp-python takes
``{"type": "json_object", "schema": ...}``, the pack falls back to it when ``json_schema`` is refused), the
parse into exactly N states and the schedule.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
import _root  # noqa: E402,F401  (the repository root on sys.path)


def write_gguf(path: str, tokenizer_dir: str, width: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2):
    import gguf
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    inv = {i: t for t, i in tok.get_vocab().items()}
    n_vocab, added = len(tok), set(tok.added_tokens_decoder)
    merges = [line.rstrip("\n") for line in open(os.path.join(tokenizer_dir, "merges.txt"), encoding="utf-8")
              if line.strip() and not line.startswith("#version")]
    w = gguf.GGUFWriter(path, "qwen2")
    w.add_name("tiny-random-qwen2")
    w.add_context_length(2048)
    w.add_embedding_length(width)
    w.add_block_count(layers)
    w.add_feed_forward_length(2 * width)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list([inv.get(i, f"[PAD{i}]") for i in range(n_vocab)])
    w.add_token_types([gguf.TokenType.CONTROL if i in added else gguf.TokenType.NORMAL for i in range(n_vocab)])
    w.add_token_merges(merges)
    w.add_eos_token_id(tok.convert_tokens_to_ids("<|im_end|>"))
    w.add_bos_token_id(tok.convert_tokens_to_ids("<|endoftext|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
        "{% else %}{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}"
        "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    rng = np.random.default_rng(0)
    hd, ff = width // heads, 2 * width

    def add(name, *shape, ones=False):
        w.add_tensor(name, np.ones(shape, np.float32) if ones else (0.02 * rng.standard_normal(shape)).astype(np.float32))

    add("token_embd.weight", n_vocab, width)
    for i in range(layers):
        add(f"blk.{i}.attn_norm.weight", width, ones=True)
        add(f"blk.{i}.attn_q.weight", width, width)
        add(f"blk.{i}.attn_q.bias", width)
        for kind in ("k", "v"):
            add(f"blk.{i}.attn_{kind}.weight", kv_heads * hd, width)
            add(f"blk.{i}.attn_{kind}.bias", kv_heads * hd)
        add(f"blk.{i}.attn_output.weight", width, width)
        add(f"blk.{i}.ffn_norm.weight", width, ones=True)
        add(f"blk.{i}.ffn_gate.weight", ff, width)
        add(f"blk.{i}.ffn_up.weight", ff, width)
        add(f"blk.{i}.ffn_down.weight", width, ff)
    add("output_norm.weight", width, ones=True)
    add("output.weight", n_vocab, width)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    import torch
    from devtools.harness import get_host

    host = get_host()
    work = tempfile.mkdtemp(prefix="va_llamacpp_")
    model = os.path.join(work, "tiny.gguf")
    t0 = time.time()
    write_gguf(model, os.path.join(host.root, "comfy", "text_encoders", "qwen25_tokenizer"))
    print(f"GGUF written in {time.time() - t0:.1f} s ({os.path.getsize(model) / 1e6:.0f} MB)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1",
                               "--port", str(port), "--n_ctx", "2048"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        mllm = host.call("VA_MLLMEndpoint", f"http://127.0.0.1:{port}/v1", "tiny", "", 300, "", True)[0]
        t0 = time.time()
        states, schedule, raw = host.call("VA_MLLMStatePrompt", torch.full((1, 64, 64, 3), 0.5),
                                          "lift one end of the box, then let it drop", 4, 33, mllm, 0, 400, 4)
        print(f"llama.cpp server answered in {time.time() - t0:.1f} s: {len(states.splitlines())} states")
        print("schedule frames:", [line.split(":")[0] for line in schedule.splitlines()])
        print("raw answer (first 200 characters):", raw[:200].replace("\n", " "))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
