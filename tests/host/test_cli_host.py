"""The command-line adapter trainer builds a graph around the same Train Adapters node; run that graph
(with the checkpoint loader and text encoder swapped for tiny stand-ins) inside the real host."""

import os

import torch
from safetensors.torch import save_file

from devtools import train_adapter


def test_cli_graph_trains_and_saves(host, tiny):
    import folder_paths

    clips = torch.randn(4, 4, 4, 4) * 0.5
    os.makedirs(folder_paths.get_input_directory(), exist_ok=True)
    save_file({"latent_tensor": clips, "latent_format_version_0": torch.tensor([])},
              os.path.join(folder_paths.get_input_directory(), "cli_clip.latent"))
    cfg = {"checkpoint": "unused.safetensors", "clips": "cli_clip.latent", "prompt": "a clip",
           "steps": 3, "file_name": "simda/cli_test", "checkpoint_every": 0}
    prompt = train_adapter.build_prompt(cfg, host.node_info)
    assert prompt["4"]["inputs"]["steps"] == 3 and prompt["4"]["inputs"]["kind"] == "simda"
    prompt["1"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny_sd15_prior.safetensors",
                                                          "weight_dtype": "default"}}
    prompt["2"] = {"class_type": "VATest_Conditioning", "inputs": {"dim": 768, "tokens": 8, "seed": 0}}
    out = host.run(prompt, ["4"])
    model, file_name, curve, summary = out["4"]
    assert file_name.startswith("simda/cli_test")
    assert os.path.exists(folder_paths.get_full_path("video_adapters", file_name))

