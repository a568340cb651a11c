"""FCA modules: the parallel branch and its frame-wise mask against a hand-written reference attention, the scale
and zero inits, the frame-wise text module, the initial-frames runtime (capture equals a hand-instrumented
forward, one pass per run), training lowers the loss, resume is exact, and the file round trip."""

import math

import pytest
import torch
import torch.nn as nn

from adapters import fca, registry
from adapters.protocol import SCOPES_KEY, Scopes, Site
from adapters.fca import FCAAdapterSet, FCABranch, FCAConfig, FrameTextModule
from adapters.training import TrainConfig, Trainer

DIM = 32
SMALL = dict(head_dim=8, frames=3, queries_per_frame=2, text_width=16, text_heads=2)


def _perturb(module, seed, std=0.2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))


def _angles(grid, d, theta=10000.0):
    """Rotary angles ``[t*h*w, d/2]`` of a 3-D grid, the head's pairs split over time, height and width as Wan
    splits them (d/2 - 2 (d/6) pairs for time, d/6 each for height and width)."""
    half = d // 2
    sizes = [half - 2 * (half // 3), half // 3, half // 3]
    t, h, w = grid
    pos = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"), -1).reshape(-1, 3)
    parts = [pos[:, a:a + 1].double() * theta ** (-torch.arange(n, dtype=torch.float64) / n) for a, n in enumerate(sizes)]
    return torch.cat(parts, 1)


def _table(angles):
    """The angles as ComfyUI's rotary table ``[1, N, 1, d/2, 2, 2]`` (rows [cos, -sin], [sin, cos])."""
    c, s = angles.cos(), angles.sin()
    return torch.stack([c, -s, s, c], -1).reshape(1, angles.shape[0], 1, angles.shape[1], 2, 2).float()


def _rotate_complex(x, angles, heads):
    """Rotary positions written as complex products: ``x [B, N, C]`` per head, pair (2i, 2i+1) times e^{i angle}."""
    b, n, c = x.shape
    z = torch.view_as_complex(x.double().reshape(b, n, heads, c // heads // 2, 2).contiguous())
    return torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)[None, :, None]).reshape(b, n, c).float()


def _reference_branch(br: FCABranch, x, text, init, frame_text, frames, mask=True, angles=None):
    """The branch written out: one attention with an explicit [N, M] mask matrix, softmax by hand; with ``angles``
    the queries and the initial-frame keys rotated (complex products) by their tokens' angles."""
    b, n, c = x.shape
    heads, d = br.heads, c // br.heads
    per = n // frames
    y = br.norm_frames(frame_text).flatten(1, 2)                        # [B, T*m, C]
    m = frame_text.shape[2]
    kv_in = torch.cat([br.norm_text(text), br.norm_init(init), y], 1)
    shared = text.shape[1] + init.shape[1]
    allowed = torch.ones(n, kv_in.shape[1], dtype=torch.bool)
    if mask:
        q_frame = torch.arange(n) // per
        k_frame = torch.arange(frames * m) // m
        allowed[:, shared:] = q_frame[:, None] == k_frame[None, :]
    q, k = br.q(br.norm_x(x)), br.k(kv_in)
    if angles is not None:
        lt, li = text.shape[1], init.shape[1]
        q = _rotate_complex(q, angles, heads)
        k = torch.cat([k[:, :lt], _rotate_complex(k[:, lt:lt + li], angles[:li], heads), k[:, lt + li:]], 1)
    q = q.reshape(b, n, heads, d).transpose(1, 2)
    k = k.reshape(b, -1, heads, d).transpose(1, 2)
    v = br.v(kv_in).reshape(b, -1, heads, d).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
    return br.scale * br.o(out)


def _inputs(seed=0, b=2, frames=3, per=4, m=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, frames * per, DIM, generator=g), torch.randn(b, 5, DIM, generator=g),
            torch.randn(b, 6, DIM, generator=g), torch.randn(b, frames, m, DIM, generator=g))


@pytest.mark.parametrize("mask", [True, False])
def test_branch_equals_reference_attention_with_frame_wise_mask(mask):
    torch.manual_seed(0)
    br = FCABranch(DIM, FCAConfig(**SMALL, mask=mask)).eval()
    _perturb(br, 1)
    x, text, init, ft = _inputs()
    with torch.no_grad():
        got = br(x, text, init, ft, frames=3, frame_chunk=2)  # chunks of 2 frames: 3 frames span two chunks
        want = _reference_branch(br, x, text, init, ft, 3, mask=mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mask", [True, False])
def test_rope_branch_rotates_queries_and_initial_frame_keys_only(mask):
    torch.manual_seed(0)
    br = FCABranch(DIM, FCAConfig(**SMALL, mask=mask, positions="rope")).eval()
    _perturb(br, 1)
    x, text, init, ft = _inputs()              # 3 frames of 2 x 2 tokens; 6 initial-frame tokens (1.5 frames)
    angles = _angles((3, 2, 2), DIM // br.heads)
    with torch.no_grad():
        got = br(x, text, init, ft, frames=3, frame_chunk=2, pe=_table(angles))
        want = _reference_branch(br, x, text, init, ft, 3, mask=mask, angles=angles)
        plain = _reference_branch(br, x, text, init, ft, 3, mask=mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got - plain).abs().max() > 1e-3     # the rotation does change the branch
    with pytest.raises(ValueError, match="rotary"):
        br(x, text, init, ft, frames=3)         # a host that passes no table


def test_rope_lets_a_video_token_find_the_initial_frame_token_at_its_own_place():
    """The same content everywhere: only positions tell tokens apart. With the rotary table a frame-0 query
    scores highest on the initial-frame key at its own place (every pair's cos(0) = 1); without it every key ties."""
    heads, d, grid = 2, 16, (2, 4, 4)
    angles = _angles(grid, d)
    u = torch.randn(1, 1, heads * d).expand(1, 32, -1)
    q = fca.rotate(u, _table(angles), heads).reshape(32, heads, d)
    k = q[:16]                                                 # the initial frame's tokens: frame 0's places
    scores = torch.einsum("nhd,mhd->nm", q[:16], k)
    assert torch.equal(scores.argmax(1), torch.arange(16))
    # relative: the score of two places depends only on their offset (here: one step right, anywhere)
    right = torch.stack([scores[i * 4 + j, i * 4 + j + 1] for i in range(4) for j in range(3)])
    torch.testing.assert_close(right, right[:1].expand_as(right), rtol=1e-4, atol=1e-4)


def test_mask_frame_p_sees_only_its_own_frame_wise_text():
    torch.manual_seed(0)
    br = FCABranch(DIM, FCAConfig(**SMALL)).eval()
    _perturb(br, 2)
    x, text, init, ft = _inputs(seed=3)
    ft2 = ft.clone()
    ft2[:, 1] = torch.randn(ft2[:, 1].shape)           # change frame 1's frame-wise text only (not by a constant:
                                                       # the pre-normalisation removes that)
    with torch.no_grad():
        a = br(x, text, init, ft, frames=3).reshape(2, 3, 4, DIM)
        b = br(x, text, init, ft2, frames=3).reshape(2, 3, 4, DIM)
        init2 = init.clone()
        init2[:, 0] = torch.randn(init2[:, 0].shape)   # initial-frame states are seen by every frame
        c = br(x, text, init2, ft, frames=3).reshape(2, 3, 4, DIM)
    torch.testing.assert_close(a[:, [0, 2]], b[:, [0, 2]])
    assert (a[:, 1] - b[:, 1]).abs().max() > 1e-4
    assert all((a[:, p] - c[:, p]).abs().max() > 1e-4 for p in range(3))


def test_scale_init_and_zero_init():
    torch.manual_seed(0)
    cfg = FCAConfig(**SMALL)
    br = FCABranch(DIM, cfg)
    assert br.scale.requires_grad and float(br.scale.detach()) == pytest.approx(0.1)
    x, text, init, ft = _inputs()
    with torch.no_grad():
        out = br(x, text, init, ft, frames=3)
        br.scale.fill_(1.0)
        unscaled = br(x, text, init, ft, frames=3)
    assert out.abs().max() > 1e-3
    torch.testing.assert_close(out, 0.1 * unscaled)
    zero = FCABranch(DIM, FCAConfig(**SMALL, init="zero"))
    assert float(zero.scale.detach()) == pytest.approx(0.1)
    with torch.no_grad():
        assert torch.count_nonzero(zero(x, text, init, ft, frames=3)) == 0


def test_frame_text_module_shapes_queries_and_inputs():
    torch.manual_seed(0)
    mod = FrameTextModule(DIM, FCAConfig(**SMALL)).eval()
    g = torch.Generator().manual_seed(4)
    text, image = torch.randn(2, 5, DIM, generator=g), torch.randn(2, 7, DIM, generator=g)
    with torch.no_grad():
        y = mod(text, image, 3)
        assert y.shape == (2, 3, 2, DIM)
        assert torch.equal(mod.frame_queries(3), mod.queries)         # the table itself at its own length
        q5 = mod.frame_queries(5)
        torch.testing.assert_close(q5[0], mod.queries[0])
        torch.testing.assert_close(q5[2], mod.queries[1])             # resampled linearly over frames
        torch.testing.assert_close(q5[4], mod.queries[2])
        assert mod(text, image, 5).shape == (2, 5, 2, DIM)
        assert (mod(text, torch.randn(image.shape), 3) - y).abs().max() > 1e-4  # the first frame's features reach it
        assert (mod(torch.randn(text.shape), image, 3) - y).abs().max() > 1e-4  # and the text


# ----------------------------------------------------------------------------------------------------
# a toy DiT that drives the hooks the way the attach table does on Wan (conditions before the forward,
# the branch beside each block times the strength, the capture on the block output)


class ToyDiT(nn.Module):
    def __init__(self, layers=2, channels=4, patch=2, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.patch = patch
        self.embed = nn.Linear(channels * patch * patch, DIM)
        self.t_embed = nn.Linear(1, DIM)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(DIM), nn.Linear(DIM, DIM), nn.GELU()) for _ in range(layers))
        self.head = nn.Linear(DIM, channels * patch * patch)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
        self.requires_grad_(False)

    def tokens(self, x):
        b, c, t, h, w = x.shape
        p = self.patch
        z = x.reshape(b, c, t, h // p, p, w // p, p).permute(0, 2, 3, 5, 1, 4, 6).reshape(b, t * (h // p) * (w // p), -1)
        return self.embed(z)

    def forward(self, x, timestep, context, to, hooks=None, record=None):
        """``hooks``: {block index: (branch fn, capture fn, strength)}; ``record``: a list the block outputs are
        appended to (the hand-instrumented forward)."""
        b, c, t, h, w = x.shape
        p = self.patch
        scopes = to.setdefault(SCOPES_KEY, Scopes())
        scopes.grid = (t, h // p, w // p)
        z = self.tokens(x) + self.t_embed(timestep.reshape(-1, 1, 1).float() / 1000.0)
        for i, blk in enumerate(self.blocks):
            out = z + blk(z + context.mean(1, keepdim=True))
            if hooks and i in hooks:
                branch, capture, s = hooks[i]
                site = Site(None, scopes.grid[0], scopes.grid, [0], None, to)
                out = out + s * branch({"img": z, "txt": context}, site)
                capture(out, site)
            if record is not None:
                record.append(out.clone())
            z = out
        y = self.head(z).reshape(b, t, h // p, w // p, c, p, p).permute(0, 4, 1, 2, 5, 3, 6)
        return y.reshape(b, c, t, h, w)


class Patched:
    """The toy DiT with an adapter set's attachments installed (conditions wrapper + per-block hooks), with the
    binding's scopes: a run scope cleared when ``run_id`` changes (as the pre-run callback does), a call scope per
    forward and per nested forward."""

    def __init__(self, dit, adapters, strength=1.0):
        self.dit, self.adapters, self.strength = dit, adapters, strength
        self.run_scope, self.last_run = {}, None
        plan = adapters.attachments("wan")
        self.conditions = [fn for b, pt, fn in plan if pt == "conditions"]
        names = adapters.block_names()
        fns = {(b, pt): fn for b, pt, fn in plan if b is not None}
        self.hooks = {i: (fns[(n, "block_parallel")], fns[(n, "capture")], strength) for i, n in enumerate(names)}

    def __call__(self, x, timestep, context, conds, run_id=None):
        if run_id is not self.last_run:  # a new sampling run
            self.run_scope.clear()
            self.last_run = run_id
        p = self.dit.patch
        scopes = Scopes(run=self.run_scope, grid=(x.shape[2], x.shape[3] // p, x.shape[4] // p))
        to = {SCOPES_KEY: scopes}
        site = Site(None, scopes.grid[0], scopes.grid, [0], None, to)

        def run(x2, t2=None, c2=None, call=None):
            to[SCOPES_KEY] = Scopes(run=self.run_scope, call=dict(call or {}), nested=True)
            try:
                return self.dit(x2, timestep if t2 is None else t2, context if c2 is None else c2, to, self.hooks)
            finally:
                to[SCOPES_KEY] = scopes

        for fn in self.conditions:
            fn(conds, x, context, site, run)
        return self.dit(x, timestep, context, to, self.hooks)


def _toy_set(seed=0, **cfg):
    torch.manual_seed(seed)
    return FCAAdapterSet.build({"blocks.0": DIM, "blocks.1": DIM}, {**SMALL, **cfg}, "wan21")


def _toy_batch(seed=0, b=2, t=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 4, t, 4, 4, generator=g), torch.randn(b, 5, DIM, generator=g)


def test_capture_returns_the_frozen_models_hidden_states():
    dit = ToyDiT()
    ad = _toy_set()
    _perturb(ad, 5)
    patched = Patched(dit, ad, strength=0.7)
    x, ctx = _toy_batch()
    init = fca.initial_frame_conds(x[:, :, :1], noise_step=1, seed=3)
    seen = {}
    original = fca.InitialFrameStates._compute

    def spy(self, *a, **k):
        entry = original(self, *a, **k)
        seen.update(entry["states"])
        return entry

    fca.InitialFrameStates._compute = spy
    try:
        with torch.no_grad():
            patched(x, torch.full((2,), 500.0), ctx, init)
    finally:
        fca.InitialFrameStates._compute = original
    record = []
    with torch.no_grad():  # the frozen model alone, instrumented by hand, on the same noised initial frames
        dit(init[fca.FRAMES_COND], init[fca.TIMESTEP_COND][:, 0], ctx, {}, hooks=None, record=record)
    assert sorted(seen) == ["blocks.0", "blocks.1"]
    for i, name in enumerate(["blocks.0", "blocks.1"]):
        torch.testing.assert_close(seen[name], record[i], rtol=0, atol=0)
    noised = fca.noised_initial_frames(x[:, :, :1], torch.randn(x[:, :, :1].shape,
                                       generator=torch.Generator().manual_seed(3)), 1)
    torch.testing.assert_close(init[fca.FRAMES_COND], noised)


def test_initial_frame_states_once_per_run():
    dit = ToyDiT()
    ad = _toy_set()
    patched = Patched(dit, ad)
    x, ctx = _toy_batch()
    init = fca.initial_frame_conds(x[:, :, :1], 1)
    run_a, run_b = torch.linspace(1, 0, 5), torch.linspace(1, 0, 5)
    with torch.no_grad():
        for sigma in run_a[:-1]:  # four steps of one sampling run: one initial-frames pass
            patched(x * sigma, torch.full((2,), float(sigma) * 1000), ctx, init, run_id=run_a)
        assert ad.initial_frame_passes == 1
        patched(x, torch.full((2,), 300.0), ctx, init, run_id=run_b)     # a new run: computed again
        assert ad.initial_frame_passes == 2
        other = fca.initial_frame_conds(x[:, :, :1] + 1.0, 1)
        patched(x, torch.full((2,), 300.0), ctx, other, run_id=run_b)    # other initial frames in the run
        assert ad.initial_frame_passes == 3
        patched(x, torch.full((2,), 200.0), ctx, other, run_id=run_b)
        assert ad.initial_frame_passes == 3


def test_branches_need_initial_frames():
    patched = Patched(ToyDiT(), _toy_set())
    x, ctx = _toy_batch()
    with pytest.raises(ValueError, match="Initial Frames Conditioning"):
        patched(x, torch.full((2,), 300.0), ctx, {})


def test_zero_init_set_leaves_the_model_unchanged_and_the_paper_init_does_not():
    dit = ToyDiT()
    x, ctx = _toy_batch()
    init = fca.initial_frame_conds(x[:, :, :1], 1)
    t = torch.full((2,), 400.0)
    with torch.no_grad():
        base = dit(x, t, ctx, {})
        zero = Patched(dit, _toy_set(init="zero"))(x, t, ctx, init)
        paper = Patched(dit, _toy_set())(x, t, ctx, init)
    torch.testing.assert_close(zero, base, rtol=0, atol=0)
    assert (paper - base).abs().max() > 1e-4


def test_training_conds_are_the_noised_initial_frames_of_each_clip():
    ad = _toy_set(initial_frames=2, noise_step=10)
    x0, _ = _toy_batch(b=3, t=4)
    c = registry.get("fca").training_conds(ad, x0, torch.tensor([2, 0, 2]))
    f = c[fca.FRAMES_COND]
    assert f.shape == (3, 4, 2, 4, 4) and c[fca.TIMESTEP_COND].flatten().tolist() == [10.0] * 3
    torch.testing.assert_close(f, x0[:, :, :2], atol=0.05, rtol=0)      # a small noise (sigma 0.01)
    assert not torch.equal(f, x0[:, :, :2])
    again = registry.get("fca").training_conds(ad, x0, torch.tensor([2, 0, 2]))[fca.FRAMES_COND]
    noise = (f - 0.99 * x0[:, :, :2]) / 0.01
    assert torch.equal(f, again)
    torch.testing.assert_close(noise[0], noise[2], rtol=0, atol=1e-3)  # the noise is fixed per clip
    assert (noise[0] - noise[1]).abs().max() > 0.1
    with pytest.raises(ValueError, match="longer"):
        registry.get("fca").training_conds(ad, x0[:, :, :2], torch.tensor([0, 1, 2]))


def _train(ad, dit, steps, ckpt=None, resume=None, seed=0, stop_at=None):
    x0, ctx = _toy_batch(seed=7, b=2, t=3)
    x0 = x0 + torch.linspace(-1, 1, 3).reshape(1, 1, 3, 1, 1)  # frames that depend on the first one

    def batch_fn(step, generator, bs):
        idx = torch.randint(0, 2, (bs,), generator=generator)
        return {"x0": x0[idx], "clip": idx}

    def model_fn(x_t, sigma, context=None, clip=None, **_):
        conds = registry.get("fca").training_conds(ad, x_t * 0 + x0[clip], clip)
        return Patched(dit, ad)(x_t, sigma * 1000.0, ctx[clip], conds)

    cfg = TrainConfig(steps=steps, lr=3e-3, batch_size=2, seed=seed, cond_dropout=0.0, warmup_steps=2,
                      lr_schedule="cosine", checkpoint_every=0)
    done = []
    stop = (lambda: len(done) >= stop_at) if stop_at else None
    return Trainer(cfg).run(ad, model_fn, batch_fn, "flow", checkpoint_path=ckpt, resume_from=resume,
                            on_step=lambda step, loss: done.append(step), should_stop=stop)


def test_training_lowers_the_loss_and_resume_is_exact(tmp_path):
    dit = ToyDiT()
    full = _train(_toy_set(seed=1), dit, 40)
    first, last = sum(full.losses[:5]) / 5, sum(full.losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    # stop after 20 steps, resume for 20 more: the same losses and weights as the uninterrupted run
    a = _toy_set(seed=1)
    ckpt = str(tmp_path / "fca_ckpt.safetensors")
    part = _train(a, dit, 40, ckpt=ckpt, stop_at=20)
    assert part.stopped and part.checkpoint_step == 20
    b = _toy_set(seed=2)  # other initial weights: the checkpoint replaces them
    rest = _train(b, dit, 40, ckpt=ckpt, resume=ckpt)
    assert part.losses == full.losses[:20]
    assert rest.losses == full.losses
    ref = _toy_set(seed=1)
    _train(ref, dit, 40)
    for (n, p), (_, q) in zip(b.named_parameters(), ref.named_parameters()):
        assert torch.equal(p, q), n


def test_cosine_schedule_with_warmup():
    tr = Trainer(TrainConfig(steps=10, lr=1.0, warmup_steps=2, lr_schedule="cosine"))
    lrs = [tr._lr(s) for s in range(10)]
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert Trainer(TrainConfig(steps=10, lr=1.0, warmup_steps=2))._lr(9) == 1.0  # the default stays constant
    with pytest.raises(ValueError):
        TrainConfig(lr_schedule="linear")


@pytest.mark.parametrize("text_module", ["layerwise", "uniform", "none"])
def test_file_round_trip_is_exact(tmp_path, text_module):
    ad = _toy_set(text_module=text_module, init="zero")
    _perturb(ad, 9)
    path = str(tmp_path / "fca.safetensors")
    ad.save(path, extra={"training": {"steps": 3}})
    back = FCAAdapterSet.load(path)
    assert back.metadata() == ad.metadata() and back.config == ad.config
    a, b = ad.file_state_dict(), back.file_state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert ("shared.text.queries" in a) == (text_module == "uniform")
    assert ("blocks.0.text.queries" in a) == (text_module == "layerwise")
    dit = ToyDiT()
    x, ctx = _toy_batch()
    init = fca.initial_frame_conds(x[:, :, :1], 1)
    with torch.no_grad():
        torch.testing.assert_close(Patched(dit, back)(x, torch.full((2,), 300.0), ctx, init),
                                   Patched(dit, ad)(x, torch.full((2,), 300.0), ctx, init), rtol=0, atol=0)


def test_config_checks_and_parameter_count():
    with pytest.raises(ValueError):
        FCAConfig(init="small")
    with pytest.raises(ValueError):
        FCAConfig(initial_frames=3)
    with pytest.raises(ValueError):
        FCAConfig(text_module="global")
    with pytest.raises(ValueError, match="positions"):
        FCAConfig(positions="absolute")
    # a file written before the option has no "positions": it reads as no positions, as it was trained
    old = {k: v for k, v in FCAConfig(**SMALL, positions="rope").to_dict().items() if k != "positions"}
    assert FCAConfig.from_dict(old).positions == "none"
    ad = _toy_set()
    assert fca.parameter_count(DIM, 2, FCAConfig(**SMALL)) == sum(p.numel() for p in ad.parameters())
    # Wan 2.1 1.3B (30 blocks of 1536) and 14B (40 of 5120) with the defaults
    assert FCAConfig().heads(1536) == 12 and FCAConfig().heads(5120) == 40
    with pytest.raises(ValueError, match="architecture"):
        ad.attachments("unet")


def test_training_recipe_is_the_papers_for_fca_and_nothing_for_other_kinds():
    from adapters import registry

    r = registry.training_recipe("fca", 5000)
    assert r == {"lr_schedule": "cosine", "warmup_steps": 200, "betas": (0.9, 0.95), "grad_clip": 1.0}
    assert registry.training_recipe("fca", 300)["warmup_steps"] == 30     # short runs: a tenth of the steps
    assert registry.training_recipe("fca", 5)["warmup_steps"] == 0
    assert registry.training_recipe("simda", 300) == {} and registry.training_recipe("aid", 300) == {}
    cfg = TrainConfig(steps=300, lr=1e-3, **registry.training_recipe("fca", 300))
    lr = [Trainer(cfg)._lr(s) for s in range(300)]
    assert lr[0] == pytest.approx(1e-3 / 30) and lr[29] == pytest.approx(1e-3)  # linear warm-up to the peak
    assert lr[30] == pytest.approx(1e-3) and lr[-1] < 1e-5                         # then the half cosine to 0
    assert all(a >= b for a, b in zip(lr[29:], lr[30:]))
