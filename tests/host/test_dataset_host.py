"""Load Training Clips in a real ComfyUI: real video files decoded with PyAV, windows, captions, resizing,
encoding, errors, and the clips feeding Train Domain Model."""

import os

import pytest
import torch
import torch.nn.functional as F

from devtools.tiny_models import WAN_TEXT_DIM, ToyVAE, toy_text_embedding, write_video


def decode_all(path):
    """Independent reference: every frame of the file, [N, H, W, 3] in 0..1."""
    import av

    with av.open(path) as c:
        return torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")).float() / 255.0 for f in c.decode(video=0)])


def make_folder(host, name, files):
    """ComfyUI/input/<name> with the videos a (40 frames), b (25) and c (12: too short for 9 frames at stride 2)
    and the text ``files`` {file name: content}."""
    d = os.path.join(host.input_dir, name)
    os.makedirs(d, exist_ok=True)
    for video, n, seed in (("a.mp4", 40, 1), ("b.mp4", 25, 2), ("c.mp4", 12, 3)):
        write_video(os.path.join(d, video), n, seed=seed)
    for file, text in files.items():
        with open(os.path.join(d, file), "w") as f:
            f.write(text)
    return d


@pytest.fixture(scope="module")
def clip_dir(host):
    return make_folder(host, "clips_test", {"a.txt": "alpha  clip\n", "b.txt": "beta clip", "notes.md": "not a video"})


def prompt(folder="clips_test", vae="video", frames=9, width=32, height=32, stride=2, per_video=2, max_clips=0):
    return {
        "1": {"class_type": "VATest_ToyVAE", "inputs": {"kind": vae}},
        "2": {"class_type": "VATest_ToyTextEncoder", "inputs": {"dim": WAN_TEXT_DIM}},
        "3": {"class_type": "VA_LoadClipFolder", "inputs": {
            "folder": folder, "vae": ["1", 0], "clip": ["2", 0], "frames": frames, "width": width, "height": height,
            "frame_stride": stride, "clips_per_video": per_video, "max_clips": max_clips,
            "default_caption": "no caption"}},
    }


# (file, start frame) of the expected clips: a has 40 frames = two windows of 17 (9 frames at stride 2),
# spread to the end (0 and 40 - 17 = 23); b has 25 frames = one window; c (12 frames) is too short.
EXPECTED = [("a.mp4", 0, "alpha clip"), ("a.mp4", 23, "alpha clip"), ("b.mp4", 0, "beta clip")]


def reference(clip_dir, file, start, frames=9, stride=2):
    all_frames = decode_all(os.path.join(clip_dir, file))
    window = all_frames[start: start + (frames - 1) * stride + 1: stride]
    # 64 -> 32 bilinear without antialiasing is exactly a 2x2 average
    return F.avg_pool2d(window.movedim(-1, 1), 2).movedim(1, -1)


def test_clips_captions_and_frames(host, tiny, clip_dir):
    out = host.run(prompt(), ["3"])["3"]
    latent, conds, text, firsts, states = out
    assert states == ""  # no <video>.states.txt in the folder
    assert latent["samples"].shape == (3, 16, 3, 4, 4)
    vae = ToyVAE(video=True)
    for i, (file, start, caption) in enumerate(EXPECTED):
        pixels = reference(clip_dir, file, start)
        assert torch.allclose(firsts[i], pixels[0], atol=1e-5)
        assert torch.allclose(latent["samples"][i], vae.encode(pixels)[0], atol=1e-5)
        assert torch.equal(conds[i][0], toy_text_embedding(caption, WAN_TEXT_DIM))
    assert len(conds) == 3
    assert text.splitlines() == [f"{f} @ {s}: {c}" for f, s, c in EXPECTED]


def test_crop_max_clips_and_image_vae(host, tiny, clip_dir):
    latent, conds, _, firsts, _ = host.run(prompt(vae="image", width=32, height=16, max_clips=2), ["3"])["3"]
    # cover-scale 64x64 to 32x32, then centre-crop 16 rows: rows 8..24
    want = reference(clip_dir, "a.mp4", 23)[:, 8:24]
    assert torch.allclose(firsts[1], want[0], atol=1e-5)
    # image VAE: frames in the batch, with the clip length recorded for the trainers
    assert latent["samples"].shape == (2 * 9, 4, 2, 4)
    assert latent["va_frames_per_clip"] == 9 and len(conds) == 2


@pytest.fixture(scope="module")
def states_dir(host):
    """The videos of ``clip_dir`` with state prompts: a's in its own frame numbers, b's one per line (c is too
    short to give a clip, so it needs none)."""
    return make_folder(host, "clips_states_test", {"a.states.txt": '"0": "hold",\n"10": "lift",\n"30": "drop",\n',
                                                    "b.states.txt": "first state\nsecond state\n"})


def test_state_prompts_per_clip(host, tiny, states_dir):
    parse = host.pack_module("adapters.state_prompts").parse_schedule
    *_, states = host.run(prompt(folder="clips_states_test"), ["3"])["3"]
    blocks = states.split("\n---\n")
    # clips a@0, a@23, b@0 (EXPECTED), 9 frames at stride 2. a@0 reaches video frame 10 at clip frame 5; a@23 sees
    # frames 23, 25, 27, 29, 31: frame 30's state from clip frame 4; b's two lines spread over its 25 frames start
    # at frames 0 and 13, which b@0 (frames 0, 2, ..., 16) reaches at clip frame 7 (frame 14)
    assert [parse(b) for b in blocks] == [[(0, "hold"), (5, "lift")], [(0, "lift"), (4, "drop")],
                                          [(0, "first state"), (7, "second state")]]
    # ... in the format AID Conditioning reads, one schedule per clip
    enc = host.pack_module("nodes.aid")
    assert enc._split(states, enc.SEPARATOR) == blocks


@pytest.mark.parametrize("b_states,needle", [
    (None, "these do not: b.mp4"),                       # a has a states file, b none
    ("", "b.states.txt: the file is empty"),
    ('"1": "late start"', "b.states.txt: the schedule starts at frame 1; it must start at 0"),
])
def test_bad_state_files_are_errors_that_name_the_file(host, tiny, states_dir, b_states, needle):
    path = os.path.join(states_dir, "b.states.txt")
    os.rename(path, path + ".off")
    try:
        if b_states is not None:
            with open(path, "w") as f:
                f.write(b_states)
        with pytest.raises(RuntimeError, match=needle):
            host.run(prompt(folder="clips_states_test"), ["3"])
    finally:
        if os.path.exists(path):
            os.remove(path)
        os.rename(path + ".off", path)


@pytest.mark.parametrize("kw,needle", [
    (dict(frames=10), "use 9 or 13"),
    (dict(width=36), "use 32 or 40"),
    (dict(frames=33, stride=2), "lower frames or frame_stride"),
])
def test_errors_say_what_to_change(host, tiny, clip_dir, kw, needle):
    with pytest.raises(RuntimeError, match=needle):
        host.run(prompt(**kw), ["3"])


def test_missing_folder_fails_validation(host, tiny):
    p = prompt(folder="no_such_folder")
    p["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["3", 3]}}  # validation needs an output node
    ok, err, _, node_errors = host.validate(p)
    assert not ok
    assert "does not exist" in str(node_errors)


def train_from_folder(host, prior, name, steps, **prompt_kw):
    """Load Training Clips -> Train Domain Model on ``prior``; returns the saved file's metadata."""
    p = prompt(**prompt_kw)
    if "sd15" in prior:
        p["2"]["inputs"]["dim"] = 768  # SD 1.5's text width
    p["4"] = {"class_type": "UNETLoader", "inputs": {"unet_name": prior, "weight_dtype": "default"}}
    p["5"] = {"class_type": "VA_TrainDomainModel", "inputs": {
        "prior_model": ["4", 0], "clips": ["3", 0], "captions": ["3", 1], "size": "tiny", "steps": steps,
        "learning_rate": 1e-3, "batch_size": 2, "seed": 0, "cond_dropout": 0.1, "checkpoint_every": 0,
        "file_name": name}}
    _, saved, _ = host.run(p, ["5"])["5"]
    assert saved == name + ".safetensors"
    return host.pack_module("adapters.files").read_metadata(os.path.join(host.models_dir, "video_adapters", saved))


def test_clips_train_a_domain_model(host, tiny, clip_dir):
    meta = train_from_folder(host, "tiny_wan_prior.safetensors", "test/from_folder", steps=6)
    assert meta["training"]["clips"] == 3 and meta["family"] == "wan21"


def test_frames_in_batch_clips_train_as_separate_clips(host, tiny, clip_dir):
    """SD-style clips (image VAE, frames in the batch) reach the trainer as clips, not one long clip."""
    meta = train_from_folder(host, "tiny_sd15_prior.safetensors", "test/sd_from_folder", steps=2, vae="image",
                             max_clips=2)
    assert meta["training"]["clips"] == 2 and meta["family"] == "sd15"


def test_saved_training_data_trains_the_same_on_the_command_line(host, tiny, clip_dir, tmp_path):
    """Save Training Data + the command-line trainer follow the Train Domain Model node's loss trajectory
    exactly: same latents (the prior's normalisation), captions, model config and noise schedule."""
    import json

    from safetensors import safe_open

    p = prompt()
    p["4"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny_wan_prior.safetensors",
                                                     "weight_dtype": "default"}}
    train = {"steps": 6, "learning_rate": 1e-3, "batch_size": 2, "seed": 0, "cond_dropout": 0.3,
             "checkpoint_every": 0}
    p["5"] = {"class_type": "VA_TrainDomainModel", "inputs": {
        "prior_model": ["4", 0], "clips": ["3", 0], "captions": ["3", 1], "size": "tiny",
        "file_name": "test/node_vs_cli", **train}}
    p["6"] = {"class_type": "VA_SaveTrainingData", "inputs": {
        "prior_model": ["4", 0], "clips": ["3", 0], "captions": ["3", 1], "name": "node_vs_cli", "size": "tiny",
        "first_frame_cond": False, "edge_cond": False}}
    out = host.run(p, ["5", "6"])
    config_path = out["6"][0]
    with open(config_path) as f:
        raw = json.load(f)
    raw["train"].update(steps=6, lr=1e-3, batch_size=2, seed=0, cond_dropout=0.3, checkpoint_every=0)
    raw.update(output=str(tmp_path / "cli_model.safetensors"), device="cpu")
    cli = host.pack_module("adapters.train_cli")
    cfg = cli.parse_config(raw, os.path.dirname(config_path))
    cli.run(cfg, log=lambda *a: None)

    def losses(path):
        with safe_open(path, framework="pt") as f:
            return f.get_tensor("history/loss")

    node = losses(os.path.join(host.models_dir, "video_adapters", "test/node_vs_cli_checkpoint.safetensors"))
    assert len(node) == 6
    assert torch.allclose(losses(cfg.checkpoint), node, rtol=0, atol=1e-6)
