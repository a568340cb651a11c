"""Guards against one-line mistakes a mutation study found surviving the rest of the suite. Every expectation is
written by hand (closed-form numbers, a hand-written computation or an independent path), never computed by the
code under test."""

import math

import pytest
import torch

from adapters import fca, registry
from adapters.fca import FCAAdapterSet
from adapters.protocol import SCOPES_KEY, Scopes, Site
from adapters.state_prompts import StatePromptError, exactly, frame_weights, parse_schedule
from adapters.training import TrainConfig, Trainer
from samplers.composition import Composition, PriorTerm
from samplers.schedules import SigmaPercentMap, StrengthSchedule, flow_percent_to_sigma

from test_fca_modules import DIM, SMALL, _perturb  # noqa: E402  (the FCA tests' small config and perturbation)


# ----------------------------------------------------------------------------------------------------
# 1. the trainer's text dropout


def _record_masks(cfg, batch=6):
    """The context masks and drop flags the trainer hands the model over a short run."""
    seen = []
    w = torch.zeros(1, requires_grad=True)

    def model_fn(x_t, sigma, context, context_mask=None, drop_text=None, drop_image=None, **_):
        seen.append((context_mask.clone(), drop_text.clone(), drop_image.clone()))
        return x_t * w

    model_fn.accepts_drop_flags = True

    def batch_fn(step, generator, bs):
        return {"x0": torch.randn(bs, 2, 3, generator=generator), "context": torch.ones(bs, 4, 5),
                "context_mask": torch.ones(bs, 4, dtype=torch.bool)}

    Trainer(cfg).run({"w": w}, model_fn, batch_fn, "flow")
    return seen


def test_text_dropout_clears_the_text_mask_of_the_text_dropped_samples():
    """Guards: the trainer's text mask taken from the image-dropout draw (the domain model never learns the
    unconditional branch CFG needs)."""
    # text dropout only (the domain model's case): every sample without text
    for mask, _, _ in _record_masks(TrainConfig(steps=3, batch_size=6, cond_dropout=1.0)):
        assert mask.shape == (6, 4) and not mask.any()
    # no dropout at all: every token stays
    for mask, _, _ in _record_masks(TrainConfig(steps=2, batch_size=6, cond_dropout=0.0)):
        assert mask.all()
    # half text-only, half image-only (exclusive outcomes): the text goes exactly where the image stays
    seen = _record_masks(TrainConfig(steps=4, batch_size=8, cond_dropout=0.5, image_dropout=0.5))
    for mask, _, drop_image in seen:
        assert torch.equal(mask.any(1), drop_image)
    assert any(0 < int(drop_image.sum()) < 8 for _, _, drop_image in seen)  # both outcomes occurred


# ----------------------------------------------------------------------------------------------------
# 4. FCA's initial-frame states depend on the text


def test_fca_initial_frame_states_are_recomputed_for_another_text_in_the_same_run():
    """Guards: FCA's initial-frame cache key without the text (cond and uncond passes with different text
    reusing one text's states)."""
    ad = FCAAdapterSet.build({"blocks.0": DIM, "blocks.1": DIM}, SMALL, "wan21")
    states = fca.InitialFrameStates(ad)

    def toy_state(i, frames, context):  # a toy frozen model whose block states use the text
        return (i + 1) * context[:, :1].expand(-1, 4, -1) + frames.sum()

    def run(frames, timestep, context, call=None):
        collected = call[states].collected
        for i, name in enumerate(ad.block_names()):
            collected[name] = toy_state(i, frames, context)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 3, 4, 4, generator=g)
    conds = fca.initial_frame_conds(torch.randn(1, 4, 1, 4, 4, generator=g), noise_step=1)
    run_scope = {}

    def call(context):
        site = Site(None, 3, (3, 2, 2), [0], None, {SCOPES_KEY: Scopes(run=run_scope)})
        states(conds, x, context, site, run)
        return site.call[states]["states"]

    texts = [torch.randn(1, 5, DIM, generator=g) for _ in range(2)]
    for context in texts + texts:  # cond, uncond, then the same two again (cached)
        got = call(context)
        for i, name in enumerate(ad.block_names()):
            torch.testing.assert_close(got[name], toy_state(i, conds[fca.FRAMES_COND], context))
    assert ad.initial_frame_passes == 2


# ----------------------------------------------------------------------------------------------------
# 6. the frame-wise cross-fade ramp


def test_frame_weights_cross_fade_ramps_linearly_into_the_next_state():
    """Guards: the frame-wise blend ramp reversed (invisible at blend 1, where every cross-fading frame gets a
    quarter)."""
    # two states, the second from latent frame 4 of 8: the second state's weight rises linearly over the boundary
    second = {1: [0, 0, 0, 2, 6, 8, 8, 8], 2: [0, 0, 1, 3, 5, 7, 8, 8], 3: [0, 1, 3, 5, 7, 9, 11, 12]}
    scale = {1: 8, 2: 8, 3: 12}
    for blend, row in second.items():
        w = frame_weights([0, 4], 8, blend)
        want = torch.tensor(row, dtype=torch.float32) / scale[blend]
        torch.testing.assert_close(w[:, 1], want, rtol=0, atol=1e-6, msg=f"blend {blend}")
        torch.testing.assert_close(w[:, 0], 1.0 - want, rtol=0, atol=1e-6, msg=f"blend {blend}")
    assert torch.equal(frame_weights([0, 4], 8, 0)[:, 1], torch.tensor([0.0] * 4 + [1.0] * 4))  # hard cut


# ----------------------------------------------------------------------------------------------------
# 7. exactly N states


def test_exactly_n_states_refuses_one_too_many_and_one_too_few():
    """Guards: exactly-N states accepting too many."""
    four = ["a closed box", "the lid lifts", "the lid is open", "the box is empty"]
    assert exactly(four, 4, "raw") == four
    with pytest.raises(StatePromptError, match="5 states instead of 4"):
        exactly(four + ["one more"], 4, "raw")
    with pytest.raises(StatePromptError, match="3 states instead of 4"):
        exactly(four[:3], 4, "raw")


# ----------------------------------------------------------------------------------------------------
# 8. FCA's scale_init


def test_fca_scale_init_sets_every_branch_scale_and_the_output_scale():
    """Guards: FCA's scale_init ignored (every other test uses the default 0.1)."""
    kind = registry.get("fca")
    config = kind.check_settings({**SMALL, "scale_init": 0.37})
    ad = kind.build({"blocks.0": DIM, "blocks.1": DIM}, config, "wan21")
    for name in ad.block_names():
        assert float(ad[name].branch.scale.detach()) == pytest.approx(0.37)
    br = ad["blocks.0"].branch.eval()
    g = torch.Generator().manual_seed(1)
    x, text, init = torch.randn(1, 6, DIM, generator=g), torch.randn(1, 5, DIM, generator=g), torch.randn(1, 4, DIM,
                                                                                                           generator=g)
    with torch.no_grad():
        got = br(x, text, init, None, frames=1)
        # by hand: W_o softmax(q k^T / sqrt(d)) v over [LN text; LN init], per head, times 0.37
        heads, d = br.heads, DIM // br.heads
        kv = torch.cat([br.norm_text(text), br.norm_init(init)], 1)
        q = br.q(br.norm_x(x)).reshape(1, 6, heads, d).transpose(1, 2)
        k = br.k(kv).reshape(1, 9, heads, d).transpose(1, 2)
        v = br.v(kv).reshape(1, 9, heads, d).transpose(1, 2)
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(d)).softmax(-1) @ v
        want = 0.37 * br.o(att.transpose(1, 2).reshape(1, 6, DIM))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert got.abs().max() > 1e-3


# ----------------------------------------------------------------------------------------------------
# 9. schedules out of order


def test_schedules_written_out_of_order_are_read_sorted_by_frame():
    """Guards: an unsorted state schedule (frames out of order must come back sorted; the readers check the first
    is frame 0)."""
    from adapters.clip_folder import video_states

    assert parse_schedule('"8": "c",\n"0": "a",\n"3": "b"') == [(0, "a"), (3, "b"), (8, "c")]
    # a states file: quoted (JSON) and unquoted hand-written schedules
    assert video_states('"5": "the lid is open",\n"0": "the box is closed"', 9) == [
        (0, "the box is closed"), (5, "the lid is open")]
    assert video_states("5: the lid is open\n0: the box is closed", 9) == [
        (0, "the box is closed"), (5, "the lid is open")]


# ----------------------------------------------------------------------------------------------------
# 10. FCA's frame-wise text reads the first initial frame


@pytest.mark.parametrize("text_module", ["layerwise", "uniform"])
def test_fca_frame_text_sees_only_the_first_initial_frame(text_module):
    """Guards: FCA's frame-wise text module seeing all initial frames instead of the first."""
    torch.manual_seed(0)
    ad = FCAAdapterSet.build({"blocks.0": DIM, "blocks.1": DIM}, {**SMALL, "initial_frames": 2,
                                                                  "text_module": text_module}, "wan21").eval()
    _perturb(ad, 2)
    module = ad.shared["text"] if text_module == "uniform" else ad["blocks.1"].text
    source = "blocks.0" if text_module == "uniform" else "blocks.1"
    g = torch.Generator().manual_seed(3)
    grid = (2, 2, 2)  # two initial latent frames of 2 x 2 tokens: tokens 0-3 are the first frame
    states = {n: torch.randn(1, 8, DIM, generator=g) for n in ad.block_names()}
    text = torch.randn(1, 5, DIM, generator=g)

    def frame_text(st):
        return ad.frame_text("blocks.1", text, {"states": st, "grid": grid, "frame_text": {}}, 3)

    with torch.no_grad():
        got = frame_text(states)
        want = module(text, states[source][:, :4], 3)
        other = {n: torch.cat([s[:, :4], torch.randn(1, 4, DIM, generator=g)], 1) for n, s in states.items()}
        again = frame_text(other)  # the second initial frame changed
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again, got, rtol=1e-5, atol=1e-6)
    assert (module(text, states[source], 3) - want).abs().max() > 1e-4  # all 8 tokens would differ


# ----------------------------------------------------------------------------------------------------
# 11. the composer's strength schedule direction


def test_linear_strength_schedule_goes_from_start_at_the_first_step_to_end_at_the_last():
    """Guards: the composer's strength schedule reversed (tests/test_composition.py computes its expectation with
    the schedule under test)."""
    lin = StrengthSchedule("linear", start_value=2.0, end_value=0.5, start_percent=0.0, end_percent=1.0)
    assert lin(0.0) == pytest.approx(2.0) and lin(1.0) == pytest.approx(0.5)
    assert lin(0.25) == pytest.approx(1.625) and lin(0.5) == pytest.approx(1.25)
    window = StrengthSchedule("linear", start_value=1.0, end_value=0.0, start_percent=0.2, end_percent=0.6)
    assert [window(p) for p in (0.0, 0.2, 0.3, 0.5, 0.6, 0.9)] == pytest.approx([1.0, 1.0, 0.75, 0.25, 0.0, 0.0])
    cos = StrengthSchedule("cosine", start_value=2.0, end_value=0.5)
    assert cos(0.25) == pytest.approx(2.0 - 1.5 * (0.5 - 0.5 * math.sqrt(0.5)))
    assert cos(0.5) == pytest.approx(1.25) and cos(1.0) == pytest.approx(0.5)
    piece = StrengthSchedule("piecewise", points=((0.0, 1.0), (0.5, 0.2)))
    assert (piece(0.49), piece(0.5), piece(1.0)) == pytest.approx((1.0, 0.2, 0.2))
    # through the composer: a flow model with shift 3 puts percent p at sigma 3t / (1 + 2t), t = 1 - p
    to_percent = SigmaPercentMap(flow_percent_to_sigma(3.0)).percent
    assert to_percent(1.0) == pytest.approx(0.0) and to_percent(0.75) == pytest.approx(0.5, abs=1e-4)
    comp = Composition(cfg=3.0, priors=[PriorTerm(0.4, lin)], window_sigma=0.0, sigma_to_percent=to_percent,
                       parameterisation="flow")
    assert comp.gammas(1.0) == pytest.approx([0.8])                  # the first step: 0.4 x 2.0
    assert comp.gammas(0.75) == pytest.approx([0.5], abs=1e-4)       # half way: 0.4 x 1.25
    assert comp.gammas(3 * 0.01 / 1.02) == pytest.approx([0.4 * (2.0 - 1.5 * 0.99)], abs=1e-4)  # p = 0.99
