"""AID modules: DQFormer shapes and frame-wise independence against a hand-written reference, identity at init
of every adapter, the long-term adapter against explicit temporal attention, and the file round trip."""

import pytest
import torch

from adapters.aid import AIDAdapterSet, AIDConfig, DQFormer, LongTermTemporalAdapter

CFG = dict(text_dim=24, vision_dim=20, context_dim=16, width=32, heads=4, depth=2, frames=3, queries_per_frame=2)


def test_dqformer_shapes_and_frame_wise_states():
    torch.manual_seed(0)
    q = DQFormer(AIDConfig(**CFG)).eval()
    g = torch.Generator().manual_seed(1)
    t1, v, t2 = torch.randn(2, 5, 24, generator=g), torch.randn(2, 7, 20, generator=g), torch.randn(2, 3, 4, 24, generator=g)
    with torch.no_grad():
        mm, dec = q(t1, v, t2)
        assert mm.shape == (2, 5, 16) and dec.shape == (2, 3, 2, 16)
        # frame f's decomposed tokens depend on frame f's state only
        t2b = t2.clone()
        t2b[:, 2] += 1.0
        _, dec2 = q(t1, v, t2b)
        torch.testing.assert_close(dec2[:, :2], dec[:, :2])
        assert (dec2[:, 2] - dec[:, 2]).abs().max() > 1e-4
        # the multimodal branch sees the image, the decomposed branch does not
        mm3, dec3 = q(t1, v + 1.0, t2)
        assert (mm3 - mm).abs().max() > 1e-4
        torch.testing.assert_close(dec3, dec)
        # masked state tokens are ignored
        mask = torch.ones(2, 3, 4, dtype=torch.bool)
        mask[:, :, 3] = False
        t2c = t2.clone()
        t2c[:, :, 3] = 100.0
        torch.testing.assert_close(q(t1, v, t2c, t2_mask=mask)[1], q(t1, v, t2, t2_mask=mask)[1])


def test_long_term_adapter_equals_explicit_temporal_attention():
    torch.manual_seed(0)
    a = LongTermTemporalAdapter(12, ratio=0.5, heads=2)
    with torch.no_grad():
        a.up.weight.normal_()
        x = torch.randn(2 * 4, 5, 12)  # 2 videos x 4 frames, 5 positions
        got = a(x, frames=4)
        want = torch.empty_like(x)
        for b in range(2):
            for n in range(5):
                seq = a.down(x[b * 4:(b + 1) * 4, n])          # [F, hidden]: one position over time
                s = a.norm(seq)[None]
                y = a.attn(s, s, s, need_weights=False)[0][0]
                want[b * 4:(b + 1) * 4, n] = x[b * 4:(b + 1) * 4, n] + a.up(y)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_adapters_are_identity_at_init_and_files_round_trip(tmp_path):
    torch.manual_seed(0)
    s = AIDAdapterSet.build({"a.0": 16, "b.1": 24}, CFG, "svd")
    x = torch.randn(2 * 3, 4, 16)
    blk = s["a.0"]
    torch.testing.assert_close(blk.spatial(x), x)
    torch.testing.assert_close(blk.short_term(x, 3, 2, 2), x)
    torch.testing.assert_close(blk.long_term(x, 3), x)
    u = torch.randn(5, 16)
    for proj in ("q", "k", "v", "out"):
        assert blk.cross_attn(proj, u if proj in ("q", "out") else torch.randn(5, 16)).abs().max() == 0
    per_block = [("cross_context"), ("cross_attn_delta"), ("self_attn_out"), ("temporal"), ("temporal")]
    assert [(b, p) for b, p, _ in s.attachments("unet")] == [(None, "conditions")] + [
        (name, p) for name in ("a.0", "b.1") for p in per_block]
    with pytest.raises(ValueError, match="SVD"):
        s.attachments("wan")
    with torch.no_grad():
        for p in s.parameters():
            p.add_(0.01)
    path = str(tmp_path / "aid.safetensors")
    s.save(path)
    loaded = AIDAdapterSet.load(path, expect_family="svd")
    for (n1, p1), (n2, p2) in zip(s.named_parameters(), loaded.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert any(k.startswith("shared.dqformer.") for k in s.file_state_dict())
    with pytest.raises(ValueError, match="divisible"):
        AIDConfig(width=30, heads=4)


def test_queries_resample_to_other_lengths_and_states_are_optional():
    torch.manual_seed(0)
    q = DQFormer(AIDConfig(**CFG)).eval()
    with torch.no_grad():
        torch.testing.assert_close(q.frame_queries(3), q.queries)
        five = q.frame_queries(5)
        assert five.shape == (5, 2, 32)
        torch.testing.assert_close(five[0], q.queries[0])
        torch.testing.assert_close(five[2], q.queries[1])
        torch.testing.assert_close(five[1], 0.5 * (q.queries[0] + q.queries[1]))
        t1, v = torch.randn(1, 5, 24), torch.randn(1, 7, 20)
        mm, dec = q(t1, v, None, frames=5)
        assert dec.shape == (1, 5, 2, 16)
        tokens = q.tokens(t1, v, torch.randn(1, 5, 4, 24))
        assert tokens.shape == (5, 5 + 2, 16)
        torch.testing.assert_close(tokens[0, :5], tokens[4, :5])  # the multimodal tokens are shared by the frames


def test_per_frame_states_follow_the_schedule():
    from adapters.aid import per_frame_states

    a, b = torch.ones(2, 3), 2 * torch.ones(4, 3)
    out = per_frame_states([a, b], [0, 3], 5)
    assert out.shape == (5, 4, 3)
    assert [float(out[f, 0, 0]) for f in range(5)] == [1, 1, 1, 2, 2]
    assert float(out[0, 3].abs().sum()) == 0  # the shorter state is zero-padded


def test_low_rank_deltas_start_at_zero_and_learn():
    from adapters.aid import CrossAttentionDeltas

    d = CrossAttentionDeltas(8, 6, rank=2)
    with torch.no_grad():
        assert d.weight("k").shape == (8, 6) and float(d.weight("k").abs().max()) == 0
    assert sum(p.numel() for p in d.parameters()) == 2 * (2 * 8 + 8 * 2) + 2 * (2 * 6 + 8 * 2)
    d.k_up.data.normal_()
    torch.testing.assert_close(d("k", torch.eye(6)), (d.k_up @ d.k_down).T)


def _attend(block, x, ctx=None, mask=None):
    """One ``_Attention`` written out: x + MHA(LN(x), LN(ctx)) with a key mask, for one sequence."""
    q = block.norm_q(x)[None]
    kv = q if ctx is None else block.norm_kv(ctx)[None]
    pad = None if mask is None else ~mask[None]
    return x + block.attn(q, kv, kv, key_padding_mask=pad, need_weights=False)[0][0]


def test_dqformer_equals_a_frame_by_frame_reference():
    """Each video and each frame on its own: the multimodal branch over the instruction, then the image; frame f's
    queries over the instruction, then frame f's state tokens (masked); the batched module must equal it."""
    torch.manual_seed(0)
    q = DQFormer(AIDConfig(**CFG)).eval()
    g = torch.Generator().manual_seed(3)
    t1, v, t2 = torch.randn(2, 5, 24, generator=g), torch.randn(2, 7, 20, generator=g), torch.randn(2, 3, 4, 24, generator=g)
    m1 = torch.ones(2, 5, dtype=torch.bool)
    m1[1, 3:] = False
    m2 = torch.ones(2, 3, 4, dtype=torch.bool)
    m2[0, 1, 2:] = False
    with torch.no_grad():
        mm, dec = q(t1, v, t2, t1_mask=m1, t2_mask=m2)
        for b in range(2):
            text, vision = q.proj_text(t1[b]), q.proj_vision(v[b])
            u = text
            for self_attn, to_vision, ff in q.upper:
                u = ff(_attend(to_vision, _attend(self_attn, u, None, m1[b]), vision))
            torch.testing.assert_close(mm[b], q.out_multimodal(u), rtol=1e-5, atol=1e-5)
            for f in range(3):
                z = q.queries[f]
                states = q.proj_text(t2[b, f])
                for to_text, to_state, ff in q.lower:
                    z = ff(_attend(to_state, _attend(to_text, z, text, m1[b]), states, m2[b, f]))
                torch.testing.assert_close(dec[b, f], q.out_decomposed(z), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("switch", ["multimodal_branch", "decomposed_branch", "state_prompts"])
def test_ablation_switches_train_and_run_only_what_is_used(switch):
    """A branch switched off is neither trained nor run: the remaining tokens equal the full DQFormer's own
    (same weights), the switched-off parameters get no gradient and are not counted as trainable."""
    torch.manual_seed(0)
    full = DQFormer(AIDConfig(**CFG)).eval()
    torch.manual_seed(0)
    part = DQFormer(AIDConfig(**CFG, **{switch: False})).eval()
    for a, b in zip(full.state_dict().values(), part.state_dict().values()):
        torch.testing.assert_close(a, b)  # the same layout and initialisation: files and seeds stay comparable
    g = torch.Generator().manual_seed(1)
    t1, v, t2 = torch.randn(2, 5, 24, generator=g), torch.randn(2, 7, 20, generator=g), torch.randn(2, 3, 4, 24, generator=g)
    ran = []
    for sub in (s for m in part.unused_parts() for s in m.modules()):
        sub.register_forward_hook(lambda *_: ran.append(1))
    got = part.tokens(t1, v, t2)
    assert not ran  # switched-off parts are not computed
    with torch.no_grad():
        mm, dec = full(t1, v, t2 if switch != "state_prompts" else None)
    want = {"multimodal_branch": dec.flatten(0, 1), "decomposed_branch": mm.repeat_interleave(3, 0),
            "state_prompts": torch.cat([mm.repeat_interleave(3, 0), dec.flatten(0, 1)], 1)}[switch]
    torch.testing.assert_close(got, want)
    got.square().sum().backward()
    frozen = [p for p in part.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)
    assert all(p.grad is not None for p in part.parameters() if p.requires_grad)
    n_frozen = sum(p.numel() for p in frozen)
    full.train().tokens(t1, v, t2).square().sum().backward()  # and the full DQFormer trains every trainable part
    assert all(p.grad is not None for p in full.parameters() if p.requires_grad)
    assert sum(p.numel() for p in part.parameters() if p.requires_grad) == \
        sum(p.numel() for p in full.parameters()) - n_frozen
