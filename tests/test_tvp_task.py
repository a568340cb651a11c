"""The miniature text-video prediction task: data, state schedule, text features and metrics with known
answers."""

import math

import pytest
import torch
import torch.nn.functional as F

from adapters.state_prompts import parse_schedule
from devtools import tvp_task as tvp


@pytest.fixture(scope="module")
def bench():
    return tvp.make_benchmark(seed=0, broad=128, train=24, heldout=48)


@pytest.fixture(scope="module")
def feats(bench):
    return {name: tvp.clip_features(getattr(bench, name).videos) for name in ("broad", "heldout", "reference")}


def _centre_plan(directions, distance=8.0, shape="square", colour="red", others=True):
    """A red square in the middle of the frame (room to move 8 px any two ways) and two still objects."""
    objects, starts = [], []
    if others:
        objects += [tvp.SceneObject("green", "circle", 3.0), tvp.SceneObject("blue", "triangle", 3.0)]
        starts += [(5.0, 5.0), (27.0, 27.0)]
    objects.append(tvp.SceneObject(colour, shape, 3.0))
    starts.append((16.0, 16.0))
    return tvp.build_plan(objects, starts, target=len(objects) - 1, directions=directions, distance=distance)


# ------------------------------------------------------------------------------------------------ data


def test_deterministic_from_seed():
    a = tvp.make_instruction_set(6, seed=1)
    b = tvp.make_instruction_set(6, seed=1)
    c = tvp.make_instruction_set(6, seed=2)
    assert torch.equal(a.videos, b.videos) and a.instructions == b.instructions
    assert not torch.equal(a.videos, c.videos)
    assert torch.equal(tvp.make_broad_set(5, seed=4).videos, tvp.make_broad_set(5, seed=4).videos)
    assert tvp.text_features("move the red square left").equal(tvp.text_features("move the red square left"))


def test_shapes_and_range(bench):
    for name, n in (("broad", 128), ("train", 24), ("heldout", 48), ("reference", 48)):
        v = getattr(bench, name).videos
        assert v.shape == (n, 8, 3, 32, 32) and v.dtype == torch.float32
        assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    assert bench.train.first_frames.shape == (24, 3, 32, 32)
    small = tvp.make_instruction_set(3, seed=0, frames=6, size=24)
    assert small.videos.shape == (3, 6, 3, 24, 24)
    assert all(p.positions.shape == (len(p.objects), 6, 2) for p in small.plans)
    assert tvp.repeat_first_frame(small.first_frames, 6).shape == (3, 6, 3, 24, 24)
    assert tvp.repeat_first_frame(small.first_frames[0], 4).shape == (4, 3, 24, 24)


def test_sets_are_disjoint(bench):
    flat = {name: getattr(bench, name).videos[:, 0].flatten(1) for name in ("train", "heldout", "reference")}
    for x, y in (("train", "heldout"), ("train", "reference"), ("heldout", "reference")):
        assert torch.cdist(flat[x], flat[y]).min() > 0.1


def test_objects_stay_inside_the_frame(bench):
    for clips in (bench.broad, bench.train, bench.heldout):
        for p in clips.plans:
            reach = torch.tensor([tvp.EXTENT * o.size for o in p.objects])[:, None]
            lo = p.positions.amin(-1) - reach
            hi = p.positions.amax(-1) + reach
            assert float(lo.min()) >= 0.0 and float(hi.max()) <= p.size, p


def test_scenes_and_motion_follow_the_plan(bench):
    for video, p in zip(bench.train.videos, bench.train.plans):
        assert 1 <= len(p.objects) <= 3
        assert len({o.colour for o in p.objects}) == len(p.objects)  # told apart by colour
        assert p.target == len(p.objects) - 1  # drawn on top
        assert tvp.parse_instruction(p.instruction) == (p.target_object.colour, p.target_object.shape, p.directions)
        still = [j for j in range(len(p.objects)) if j != p.target]
        for j in still:
            assert torch.equal(p.positions[j], p.positions[j, :1].expand_as(p.positions[j]))
        path = p.positions[p.target]
        for (a, b), d in zip(p.phases, p.directions):
            step = torch.tensor(tvp.DIRECTIONS[d]) * p.distance
            assert torch.allclose(path[b] - path[a], step, atol=1e-4)
        # the rendered object is whole in every frame (its tracked core keeps its size: soft edges count only
        # in part) and its tracked centre is the planned one
        centre, mass = tvp.track(video, p.target_object.colour)
        assert torch.allclose(centre, path, atol=0.35)
        assert float(mass.max() / mass.min()) < 1.35 and float(mass.min()) > 0.5 * p.target_object.area


def test_broad_set_is_instruction_free_and_varied(bench):
    assert all(p.target is None and p.instruction == "" for p in bench.broad.plans)
    moving = [sum(int(float((pp[-1] - pp[0]).norm()) > 0.5) for pp in p.positions) for p in bench.broad.plans]
    assert max(moving) >= 2 and min(moving) == 0  # several movers in some clips, nothing moving in others


def test_phase_boundaries():
    assert tvp.phase_boundaries(1, 8) == (0, 7)
    assert tvp.phase_boundaries(2, 8) == (0, 4, 7)
    assert tvp.phase_boundaries(2, 6) == (0, 3, 5)
    with pytest.raises(ValueError):
        tvp.phase_boundaries(2, 2)


# ------------------------------------------------------------------------------------------------ states and text


def test_decomposer_schedule_parses_with_phase_boundaries(bench):
    for p in bench.train.plans + bench.heldout.plans:
        entries = parse_schedule(tvp.decompose(p.instruction, p.frames))
        assert [f for f, _ in entries] == list(p.boundaries[:-1])
        assert all(p.target_object.name in s for _, s in entries)
    assert parse_schedule(tvp.decompose("lift the blue circle, then drop it", 8)) == [
        (0, "the blue circle is lifted up"), (4, "the blue circle drops back down")]
    assert parse_schedule(tvp.decompose("move the red square left, then up", 8)) == [
        (0, "the red square moves left"), (4, "the red square moves up")]
    assert tvp.frame_states(tvp.decompose("move the red square left, then up", 8), 8) == (
        ["the red square moves left"] * 4 + ["the red square moves up"] * 4)
    assert bench.train.schedules()[0] == tvp.decompose(bench.train.plans[0].instruction, 8)


def test_instruction_grammar_round_trip():
    obj = tvp.SceneObject("yellow", "triangle", 3.0)
    for a in tvp.DIRECTIONS:
        assert tvp.parse_instruction(tvp.instruction_text(obj, (a,))) == ("yellow", "triangle", (a,))
        for b in tvp.DIRECTIONS:
            if a != b:
                assert tvp.parse_instruction(tvp.instruction_text(obj, (a, b))) == ("yellow", "triangle", (a, b))
    assert tvp.instruction_text(obj, ("up", "down")) == "lift the yellow triangle, then drop it"
    assert tvp.parse_instruction("lift the yellow triangle") == ("yellow", "triangle", ("up",))
    for bad in ("move the red square", "move the purple square left", "jump the red square", "move it left"):
        with pytest.raises(ValueError):
            tvp.parse_instruction(bad)


def test_text_features():
    f = tvp.text_features("move the red square left", dim=16)
    assert f.shape == (5, 16)
    assert not torch.allclose(f, tvp.text_features("move the blue square left", dim=16))
    assert not torch.allclose(f, tvp.text_features("move the red square right", dim=16))
    assert not torch.allclose(f, tvp.text_features("move the red circle left", dim=16))
    # the same word at the same place has the same features whatever the rest of the sentence
    assert torch.allclose(f[:2], tvp.text_features("move the green circle up", dim=16)[:2])
    feats, mask = tvp.text_batch(["move the red square left", "lift the blue circle, then drop it", ""], 16, 10)
    assert feats.shape == (3, 10, 16) and mask.sum(1).tolist() == [5, 7, 0]
    assert torch.equal(feats[0, :5], f) and float(feats[0, 5:].abs().sum()) == 0.0


def test_text_code_2_marks_clauses_and_leaves_single_clause_texts_alone():
    one = "move the red square left"
    assert torch.equal(tvp.text_features(one, 16, 10, code=2), tvp.text_features(one, 16, 10))
    two = "move the red square left, then up"
    a, b = tvp.text_features(two, 16, code=1), tvp.text_features(two, 16, code=2)
    # words up to "then" keep their features; "then" and every later word gain the same clause-1 vector
    assert torch.equal(a[:5], b[:5])
    extra = b[5:] - a[5:]
    assert torch.allclose(extra, tvp._word_vector("<clause 1>", 16, 0).expand(2, 16), atol=1e-6)
    three = tvp.text_features("a then b then c", 8, code=2) - tvp.text_features("a then b then c", 8)
    assert torch.allclose(three[3:], tvp._word_vector("<clause 2>", 8, 0).expand(2, 8), atol=1e-6)
    feats, mask = tvp.text_batch([two, ""], 16, 10, code=2)
    assert torch.equal(feats[0, :7], b) and float(feats[0, 7:].abs().sum()) == 0.0 and mask.sum(1).tolist() == [7, 0]
    with pytest.raises(ValueError, match="text code"):
        tvp.text_features(one, code=3)


# ------------------------------------------------------------------------------------------------ instruction accuracy


def test_ground_truth_scores_one(bench):
    for clips in (bench.train, bench.heldout):
        acc = tvp.instruction_accuracy(clips.videos, clips.plans)
        assert acc["score"] == 1.0 and acc["all_phases"] == 1.0


def test_wrong_way_scores_zero():
    plan = _centre_plan(("left",))
    assert tvp.phase_correct(tvp.render([plan])[0], plan) == [True]
    for wrong in (("right",), ("up",), ("down",)):
        video = tvp.render([tvp.with_directions(plan, wrong)])[0]
        assert tvp.phase_correct(video, plan) == [False]


def test_repeated_first_frame_scores_zero(bench):
    for clips in (bench.train, bench.heldout):
        acc = tvp.instruction_accuracy(tvp.repeat_first_frame(clips.first_frames, 8), clips.plans)
        assert acc["score"] == 0.0 and acc["all_phases"] == 0.0


def test_two_phase_with_only_the_first_right_scores_half():
    plan = _centre_plan(("left", "up"))
    half = tvp.render([tvp.with_directions(plan, ("left", "down"))])
    acc = tvp.instruction_accuracy(half, [plan])
    assert acc["per_clip"] == [0.5] and acc["per_clip_all"] == [False]
    lift = _centre_plan(("up", "down"), shape="circle", colour="blue", others=False)
    assert lift.instruction == "lift the blue circle, then drop it"
    stays_up = tvp.render([tvp.with_directions(lift, ("up", "up"))])  # up again instead of back down
    assert tvp.instruction_accuracy(stays_up, [lift])["per_clip"] == [0.5]
    assert tvp.instruction_accuracy(tvp.render([lift]), [lift])["per_clip"] == [1.0]


def test_too_short_or_vanishing_fails():
    plan = _centre_plan(("left",))
    short = tvp.build_plan(list(plan.objects), [tuple(x) for x in plan.positions[:, 0].tolist()], plan.target,
                           ("left",), 0.2 * plan.distance)
    assert tvp.phase_correct(tvp.render([short])[0], plan) == [False]
    video = tvp.render([plan])[0].clone()
    bg = torch.tensor(plan.background).view(3, 1, 1)
    red = tvp.colour_weights(video[-1], torch.tensor([tvp.PALETTE["red"]]))[0] > 0
    video[-1] = torch.where(red, bg, video[-1])  # the object is gone in the last frame
    assert tvp.phase_correct(video, plan) == [False]


def test_tracker_is_robust_to_blur_and_noise(bench):
    v = bench.heldout.videos
    n, t, c, h, w = v.shape
    blurred = F.avg_pool2d(F.pad(v.reshape(-1, 1, h, w), (1, 1, 1, 1), mode="replicate"), 3, 1).reshape(v.shape)
    g = torch.Generator().manual_seed(0)
    noisy = (blurred + 0.05 * torch.randn(v.shape, generator=g)).clamp(0, 1)
    assert tvp.instruction_accuracy(noisy, bench.heldout.plans)["score"] >= 0.95


# ------------------------------------------------------------------------------------------------ frame errors


def test_first_frame_psnr_and_future_mse(bench):
    v = bench.heldout.videos[:4]
    assert torch.equal(tvp.first_frame_psnr(v, v[:, 0]), torch.full((4,), 100.0))
    off = (v + 0.1).clamp_max(2.0)  # a constant offset of 0.1: MSE 0.01, 20 dB
    assert torch.allclose(tvp.first_frame_psnr(off, v[:, 0]), torch.full((4,), 20.0), atol=1e-3)
    err = tvp.future_mse(off, v)
    assert err.shape == (4, 7) and torch.allclose(err, torch.full((4, 7), 0.01), atol=1e-6)
    still = tvp.future_mse(tvp.repeat_first_frame(v[:, 0], 8), v)
    assert float(still[:, 0].mean()) < float(still[:, -1].mean())  # the longer the horizon the larger the error


# ------------------------------------------------------------------------------------------------ Frechet distance


def test_frechet_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=g, dtype=torch.float64)
    assert tvp.frechet_distance(a, a) < 1e-6
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0], dtype=torch.float64)
    assert math.isclose(tvp.frechet_distance(a, a + shift), float(shift.square().sum()), rel_tol=1e-6)
    # scaled copy: covariances S and k^2 S commute, so the trace term is (k - 1)^2 tr(S)
    k = 2.5
    expected = (k - 1) ** 2 * float(torch.cov(a.T).trace()) + float(((k - 1) * a.mean(0)).square().sum())
    assert math.isclose(tvp.frechet_distance(a, k * a), expected, rel_tol=1e-5)
    b = torch.randn(300, 6, generator=g, dtype=torch.float64) * 3 + 1
    assert math.isclose(tvp.frechet_distance(a, b), tvp.frechet_distance(b, a), rel_tol=1e-6)
    flat = torch.zeros(10, 6, dtype=torch.float64)  # rank zero: still finite
    assert math.isfinite(tvp.frechet_distance(flat, a))


def test_clip_features_and_noise_floor(bench, feats):
    assert feats["heldout"].shape == (48, len(tvp.FEATURE_NAMES)) == (48, len(tvp.FEATURE_MIN_STD))
    assert torch.isfinite(feats["broad"]).all()
    floor = tvp.noise_floor(feats["heldout"], feats["reference"])
    ref = tvp.standardise(feats["reference"], feats["reference"])
    broad = tvp.frechet_distance(tvp.standardise(feats["broad"], feats["reference"]), ref)
    still = tvp.clip_distance(tvp.repeat_first_frame(bench.heldout.first_frames, 8), feats["reference"])
    assert floor < 0.2 * broad and floor < 0.5 * still, (floor, broad, still)
    # corrupting the ground truth moves it away from the reference
    g = torch.Generator().manual_seed(1)
    noisy = (bench.heldout.videos + 0.1 * torch.randn(bench.heldout.videos.shape, generator=g)).clamp(0, 1)
    assert tvp.clip_distance(noisy, feats["reference"]) > 3 * floor


def test_spread_feature_is_per_unit_area_and_ignores_a_colour_that_nearly_vanishes():
    """The spread feature: 1/6 for a square of any size, larger for an object split in two, and bounded where a
    colour is down to two stray pixels in far corners in one frame (once that frame's spread over its few pixels
    made one clip of 64 dominate the distance by four orders of magnitude)."""
    i = tvp.FEATURE_NAMES.index("spread")
    red = torch.tensor(tvp.PALETTE["red"])

    def clip(paint):
        v = torch.full((1, 8, 3, 32, 32), 0.5)
        for t in range(8):
            for ys, xs in paint(t):
                v[0, t, :, ys, xs] = red[:, None, None]
        return v

    small = clip(lambda t: [(slice(12, 18), slice(12, 18))])
    large = clip(lambda t: [(slice(8, 22), slice(8, 22))])
    split = clip(lambda t: [(slice(4, 10), slice(4, 10)), (slice(22, 28), slice(22, 28))])
    fading = clip(lambda t: [(slice(12, 18), slice(12, 18))] if t < 7 else [(slice(0, 1), slice(0, 1)),
                                                                          (slice(31, 32), slice(31, 32))])
    f = {k: float(tvp.clip_features(v)[0, i]) for k, v in
         dict(small=small, large=large, split=split, fading=fading).items()}
    assert abs(f["small"] - 1 / 6) < 0.01 and abs(f["large"] - 1 / 6) < 0.01, f
    assert 4 * f["small"] < f["split"] <= 1.0, f  # split in two: far above a compact object, at the cap
    assert f["fading"] < 2 * f["small"], f  # the frame of two stray pixels is left out


def test_summary(bench, feats):
    h = bench.heldout
    gt = tvp.summary(h.videos, h.plans, h.videos, feats["reference"])
    assert set(gt) == {"fd", "instruction_score", "instruction_all_phases", "first_frame_psnr", "future_mse",
                       "future_mse_per_frame", "clips"}
    assert math.isclose(gt["fd"], tvp.noise_floor(feats["heldout"], feats["reference"]), rel_tol=1e-9)
    assert gt["instruction_score"] == 1.0 and gt["first_frame_psnr"] == 100.0 and gt["future_mse"] == 0.0
    still = tvp.summary(tvp.repeat_first_frame(h.first_frames, 8), h.plans, h.videos, feats["reference"])
    assert still["instruction_score"] == 0.0 and still["first_frame_psnr"] == 100.0
    assert still["future_mse"] > 0.0 and len(still["future_mse_per_frame"]) == 7 and still["fd"] > gt["fd"]
    with pytest.raises(ValueError):
        tvp.summary(h.videos[:3], h.plans, h.videos, feats["reference"])


def test_patch_code_is_centred_unit_scale_and_its_own_inverse_on_its_span():
    code = tvp.PatchCode.fit(tvp.make_broad_set(48, seed=3).videos, channels=16, patch=4)
    clips = tvp.make_instruction_set(16, seed=5)
    z = code.encode(clips.videos)
    assert z.shape == (16, 8, 16, 8, 8)
    assert abs(float(z.mean())) < 0.05 and 0.8 < float(z.square().mean().sqrt()) < 1.25
    back = code.decode(z)
    psnr = 10 * torch.log10(1 / (back - clips.videos).square().flatten(1).mean(1))
    assert float(psnr.mean()) > 30  # flat shapes need few directions
    again = tvp.PatchCode.from_state_dict(code.state_dict())
    assert torch.equal(again.decode(z), back)
    full = tvp.PatchCode.fit(tvp.make_broad_set(8, seed=3).videos, channels=48, patch=4)  # every direction: lossless
    assert torch.allclose(full.decode(full.encode(clips.videos)), clips.videos, atol=1e-4)


def test_object_fidelity_scores_truth_one_and_an_empty_scene_zero():
    clips = tvp.make_instruction_set(12, seed=4)  # no object hides another (broad clips may overlap)
    assert tvp.object_fidelity(clips.videos, clips.plans) == {"found": 1.0, "kept": 1.0}
    blank = torch.full_like(clips.videos, 0.2)
    assert tvp.object_fidelity(blank, clips.plans) == {"found": 0.0, "kept": 0.0}
    # an object that shrinks to half its size halfway is found but not kept
    shrunk = clips.videos.clone()
    plan = clips.plans[0]
    obj = plan.objects[0]
    w = tvp.colour_weights(shrunk, torch.tensor([tvp.PALETTE[obj.colour]]))[0, :, 0]  # [T, H, W]
    rows = torch.nonzero(w[4:].sum((0, 2)) > 0)
    cut = int(rows.float().mean())
    shrunk[0, 4:, :, cut:, :] = torch.where(w[4:, None, cut:, :] > 0, torch.tensor(plan.background)[:, None, None],
                                            shrunk[0, 4:, :, cut:, :])
    only = [{obj.colour}] + [set()] * 11
    assert tvp.object_fidelity(shrunk, clips.plans, only=only)["kept"] == 0.0
    assert tvp.object_fidelity(clips.videos, clips.plans, only=only)["kept"] == 1.0


def test_novel_split_keeps_the_named_combinations_out_of_training():
    train = tvp.make_instruction_set(120, seed=0, novel=False)
    novel = tvp.make_instruction_set(30, seed=1, novel=True)
    assert not any(tvp.is_novel(p) for p in train.plans) and all(tvp.is_novel(p) for p in novel.plans)
    seen = {(p.target_object.colour, p.target_object.shape) for p in train.plans}
    assert not seen & set(tvp.NOVEL_TARGETS)
    assert ("right", "down") not in {tuple(p.directions) for p in train.plans}
    assert {(p.target_object.colour, p.target_object.shape) for p in novel.plans} & set(tvp.NOVEL_TARGETS)
    # the same seed without the split is the unfiltered stream
    assert tvp.make_instruction_set(5, seed=0).instructions == tvp.make_instruction_set(5, seed=0).instructions


def test_single_phase_broad_set_moves_every_object_along_one_line_at_constant_speed():
    def turns(clips):  # objects whose frame-to-frame step changes over the clip
        n = 0
        for p in clips.plans:
            steps = p.positions[:, 1:] - p.positions[:, :-1]  # [K, T-1, 2]
            n += int(((steps - steps[:, :1]).abs().amax(dim=(1, 2)) > 1e-4).sum())
        return n

    single = tvp.make_broad_set(64, seed=5, max_phases=1)
    assert turns(single) == 0
    assert any(float((p.positions[:, -1] - p.positions[:, 0]).abs().max()) > 2 for p in single.plans)  # they do move
    assert turns(tvp.make_broad_set(64, seed=5)) > 0  # the default set has changes of direction
    assert torch.equal(single.videos, tvp.make_broad_set(64, seed=5, max_phases=1).videos)
    with pytest.raises(ValueError):
        tvp.make_broad_set(2, max_phases=3)


def test_single_phase_instruction_set_has_one_phase_and_its_own_stream():
    single = tvp.make_instruction_set(48, seed=5, max_phases=1)
    assert {len(p.directions) for p in single.plans} == {1}
    assert all(tvp.instruction_accuracy(single.videos, single.plans)["per_clip_all"])
    default = tvp.make_instruction_set(48, seed=5)
    assert {len(p.directions) for p in default.plans} == {1, 2}
    assert torch.equal(default.videos, tvp.make_instruction_set(48, seed=5, max_phases=2).videos)


def test_reverse_directions_turns_every_phase_round_and_keeps_the_object():
    for text, want in [("move the red square left", ("right",)), ("lift the blue circle", ("down",)),
                       ("lift the blue circle, then drop it", ("down", "up")),
                       ("move the cyan triangle up, then left", ("down", "right"))]:
        colour, shape, dirs = tvp.parse_instruction(text)
        assert tvp.parse_instruction(tvp.reverse_directions(text)) == (colour, shape, want)
        assert tvp.reverse_directions(tvp.reverse_directions(text)) == text
    two = "move the red square left and move the blue circle up"
    assert tvp.reverse_directions(two) == "move the red square right and move the blue circle down"


@pytest.mark.parametrize("scene", [0, 5])
def test_demo_scene_pairs_share_the_start_and_differ_in_the_motion(scene):
    swapped, single = tvp.demo_scene(scene), tvp.demo_scene(scene, "one motion each")
    first, second = swapped.plans
    assert second.directions == tuple(reversed(first.directions)) and len(first.directions) == 2
    a, b = single.plans
    assert (a.directions, b.directions) == ((first.directions[0],), (first.directions[1],))
    assert a.instruction == f"move the {first.target_object.name} {first.directions[0]}"
    for clips in (swapped, single):
        assert torch.equal(clips.videos[0, 0], swapped.videos[0, 0]) and torch.equal(clips.videos[1, 0], clips.videos[0, 0])
        r = 0.5 * clips.plans[0].target_object.size
        for video, plan in zip(clips.videos, clips.plans):
            assert all(tvp.phase_correct(video, plan))  # each truth follows its own instruction
            assert bool(((plan.positions >= r) & (plan.positions <= plan.size - r)).all())
    # one motion each: the two clips move the object the two ways by the same distance
    moved = [p.positions[p.target, -1] - p.positions[p.target, 0] for p in single.plans]
    assert torch.allclose(moved[0].norm(), moved[1].norm()) and not torch.allclose(moved[0], moved[1])
    with pytest.raises(ValueError, match="one of"):
        tvp.demo_scene(0, "both ways")


def test_image_embedding_is_a_fixed_projection_of_the_pooled_frame():
    frames = torch.rand(3, 3, 32, 32)
    emb = tvp.image_embedding(frames, 64)
    assert emb.shape == (3, 64) and torch.equal(emb, tvp.image_embedding(frames.clone(), 64))
    # a frame that is constant on each 4 x 4 block pools to those blocks: the projection of their values
    blocks = torch.rand(1, 3, 8, 8)
    big = blocks.repeat_interleave(4, -1).repeat_interleave(4, -2)
    proj = torch.randn(192, 64, generator=torch.Generator().manual_seed(1234)) / math.sqrt(192)
    assert torch.allclose(tvp.image_embedding(big, 64), (blocks * 2 - 1).flatten(1) @ proj, atol=1e-5)
