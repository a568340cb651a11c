"""The miniature world of text-video prediction (TVP): scenes, instructions, rendering, a stand-in text encoder
and a latent code. Plain torch and the standard library, deterministic from a seed, and fast (a few hundred clips
render in a fraction of a second). The pack's tiny instruction demo draws its first frames, reads its prompts and
encodes its latents with this module; ``devtools.tvp_task`` adds the metrics of the benchmarks on top.

Scenes
    One to three flat-coloured objects on a plain grey background. Every object in a scene has a different
    colour from :data:`PALETTE` (red, green, blue, yellow, cyan, magenta: far apart in RGB, so an object can
    be found by its colour alone) and a shape from :data:`SHAPES` (square, circle, triangle). Edges are
    anti-aliased (one pixel of soft coverage), so sub-pixel motion is smooth.

Videos
    One clip is a float tensor ``[T, 3, H, W]`` in ``[0, 1]``; a set is ``[N, T, 3, H, W]``. Defaults:
    ``T = 8`` frames of ``H = W = 32`` pixels. Positions are in pixels, ``(x, y)`` with ``y`` pointing down,
    pixel ``(i, j)`` having its centre at ``(j + 0.5, i + 0.5)``.

Instructions
    An instruction names one object and a one- or two-phase motion, for example ``"move the red square
    left"``, ``"move the red square left, then up"``, ``"lift the blue circle, then drop it"`` (lift = up,
    drop = back down). The named object moves a fixed distance per phase at constant speed within the phase;
    every other object stays still. The named object is drawn on top, so it is never hidden.

Phase split
    A clip of ``T`` frames with ``n`` phases has boundaries ``b_0 = 0 < b_1 < ... < b_n = T - 1``, where
    ``b_0 .. b_{n-1}`` are the frames at which the pack's state-prompt schedule starts each of ``n`` states
    (:func:`adapters.state_prompts.state_frames`, the even split the ComfyUI nodes use). Phase ``k`` is the
    motion from frame ``b_k`` to frame ``b_{k+1}``. For ``T = 8``: one phase is frames 0-7; two phases are
    frames 0-4 and 4-7. So the schedule of the state prompts and the rendered motion agree frame for frame.

States
    :func:`decompose` is a rule-based stand-in for the multimodal LLM that AID asks for the video's states:
    it parses the instruction and writes one short state sentence per phase, placed on the phase's first
    frame, in the schedule format of :func:`adapters.state_prompts.schedule`.

Sets
    :func:`make_broad_set` (instruction-free motions of random objects, several may move, in any direction:
    pretraining data for an image-to-video base model), :func:`make_instruction_set` (instruction clips) and
    :func:`make_benchmark` (a broad set, a small training set and two disjoint held-out sets).
"""

from __future__ import annotations

import math
import random
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from .state_prompts import parse_schedule, schedule, state_frames
from .synthetic_video import principal_directions

# ----------------------------------------------------------------------------------------------------------
# vocabulary

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.12),
    "green": (0.10, 0.85, 0.15),
    "blue": (0.15, 0.25, 0.95),
    "yellow": (0.95, 0.85, 0.15),
    "cyan": (0.10, 0.85, 0.85),
    "magenta": (0.85, 0.20, 0.85),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
DIRECTIONS: dict[str, tuple[float, float]] = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0),
                                              "down": (0.0, 1.0)}

BACKGROUND_RANGE = (0.16, 0.30)  # grey level of the plain background, drawn per clip
SIZE_RANGE = (0.08, 0.125)  # object half-extent as a fraction of the frame size
DISTANCE_RANGE = (0.20, 0.30)  # distance travelled per phase (instruction clips), fraction of the frame size
TRIANGLE_INRADIUS = 0.65  # triangle inradius as a fraction of the half-extent (apex at 2x this above centre)
EXTENT = 2 * TRIANGLE_INRADIUS  # the largest reach of any shape from its centre, in half-extents
MARGIN = 1.0  # pixels kept free between an object and the frame border


@dataclass(frozen=True)
class SceneObject:
    """One object: a palette ``colour`` name, a ``shape`` name and its half-extent ``size`` in pixels (half the
    side of a square, the radius of a circle; a triangle has inradius ``TRIANGLE_INRADIUS * size``)."""

    colour: str
    shape: str
    size: float

    @property
    def rgb(self) -> tuple[float, float, float]:
        return PALETTE[self.colour]

    @property
    def area(self) -> float:
        """Area in pixels (what a tracker that sees the whole object measures)."""
        if self.shape == "square":
            return 4.0 * self.size ** 2
        if self.shape == "circle":
            return math.pi * self.size ** 2
        h = TRIANGLE_INRADIUS * self.size
        return 3.0 * math.sqrt(3.0) * h * h

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class ClipPlan:
    """What a clip shows, kept alongside its video so that metrics know the answer.

    ``objects`` (K of them, drawn in this order, the last on top), ``positions [K, T, 2]`` the ``(x, y)``
    centre of every object in every frame (pixels), ``background`` RGB. For an instruction clip: ``target``
    (index into ``objects`` of the named object), ``directions`` (one direction name per phase),
    ``distance`` (pixels per phase), ``boundaries`` (``n + 1`` frames, phase ``k`` runs from
    ``boundaries[k]`` to ``boundaries[k + 1]``) and the ``instruction`` text. Instruction-free clips have
    ``target = None``, no directions and an empty instruction.
    """

    objects: tuple[SceneObject, ...]
    positions: torch.Tensor
    background: tuple[float, float, float]
    frames: int
    size: int
    target: int | None = None
    directions: tuple[str, ...] = ()
    distance: float = 0.0
    boundaries: tuple[int, ...] = ()
    instruction: str = ""

    @property
    def target_object(self) -> SceneObject:
        if self.target is None:
            raise ValueError("this clip has no instruction")
        return self.objects[self.target]

    @property
    def phases(self) -> list[tuple[int, int]]:
        """``[(start_frame, end_frame)]`` of each phase."""
        return list(zip(self.boundaries[:-1], self.boundaries[1:]))


@dataclass
class TVPClips:
    """A set of clips: ``videos [N, T, 3, H, W]`` in 0..1 and one :class:`ClipPlan` per clip."""

    videos: torch.Tensor
    plans: list[ClipPlan]

    def __len__(self) -> int:
        return len(self.plans)

    @property
    def first_frames(self) -> torch.Tensor:
        """``[N, 3, H, W]``: the frame a predictor is given."""
        return self.videos[:, 0]

    @property
    def instructions(self) -> list[str]:
        return [p.instruction for p in self.plans]

    def schedules(self, temporal_stride: int = 1) -> list[str]:
        """The decomposer's state schedule of each clip (see :func:`decompose`)."""
        return [decompose(p.instruction, p.frames, temporal_stride) for p in self.plans]


@dataclass
class TVPBenchmark:
    """All sets of one benchmark seed: ``broad`` (instruction-free pretraining clips), ``train`` (instruction
    clips to adapt on) and two disjoint held-out instruction sets: predictions are made from ``heldout``'s
    first frames and instructions and compared with its ground truth; the Frechet distance is taken against
    ``reference``, another draw of the same distribution, so the distance of ``heldout``'s own ground truth
    to ``reference`` is the noise floor."""

    broad: TVPClips
    train: TVPClips
    heldout: TVPClips
    reference: TVPClips
    settings: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# phases and trajectories


def phase_boundaries(n_phases: int, frames: int) -> tuple[int, ...]:
    """``n + 1`` phase boundaries for a clip of ``frames`` frames (module docstring, "Phase split")."""
    if n_phases < 1:
        raise ValueError("at least one phase")
    starts = state_frames(n_phases, frames)
    bounds = tuple(starts) + (frames - 1,)
    if any(b >= c for b, c in zip(bounds[:-1], bounds[1:])):
        raise ValueError(f"{n_phases} phases need more than {frames} frames (each phase moves over at least one "
                         "frame step)")
    return bounds


def _trajectory(start: tuple[float, float], steps: list[tuple[float, float]], bounds: tuple[int, ...],
                frames: int) -> list[tuple[float, float]]:
    """Per-frame centres: from ``start``, phase ``k`` adds ``steps[k]`` linearly between its boundaries."""
    out = []
    x, y = start
    for t in range(frames):
        px, py = x, y
        for (a, b), (sx, sy) in zip(zip(bounds[:-1], bounds[1:]), steps):
            f = min(max((t - a) / (b - a), 0.0), 1.0)
            px += f * sx
            py += f * sy
        out.append((px, py))
    return out


def _offset_range(steps: list[tuple[float, float]], axis: int) -> tuple[float, float]:
    acc, lo, hi = 0.0, 0.0, 0.0
    for s in steps:
        acc += s[axis]
        lo, hi = min(lo, acc), max(hi, acc)
    return lo, hi


def _start_range(obj_size: float, steps: list[tuple[float, float]], size: int, axis: int) -> tuple[float, float]:
    """Start coordinates on ``axis`` for which the whole path keeps the object inside the frame."""
    lo, hi = _offset_range(steps, axis)
    reach = EXTENT * obj_size + MARGIN
    return reach - lo, size - reach - hi


def build_plan(objects: list[SceneObject], starts: list[tuple[float, float]], target: int | None = None,
               directions: tuple[str, ...] | list[str] = (), distance: float = 0.0, frames: int = 8, size: int = 32,
               background: tuple[float, float, float] = (0.2, 0.2, 0.2), instruction: str | None = None,
               steps: list[list[tuple[float, float]]] | None = None) -> ClipPlan:
    """A plan from explicit objects and first-frame centres.

    With ``target`` and ``directions``: the named object moves ``distance`` pixels in each direction, one
    phase per direction, the others stay still; ``instruction`` defaults to :func:`instruction_text`. With
    ``steps`` instead: free motion, ``steps[k]`` the list of per-phase displacement vectors of object ``k``
    (an empty list: still); all multi-phase objects share the same phase boundaries. Positions are not
    clamped: keeping objects inside the frame is the caller's choice (the set generators do).
    """
    directions = tuple(directions)
    if steps is None:
        steps = [[] for _ in objects]
        if target is not None:
            steps[target] = [(DIRECTIONS[d][0] * distance, DIRECTIONS[d][1] * distance) for d in directions]
    n_phases = max([len(s) for s in steps] + [1])
    bounds = phase_boundaries(n_phases, frames)
    paths = []
    for start, st in zip(starts, steps):
        b = phase_boundaries(len(st), frames) if st else bounds
        paths.append(_trajectory(start, st, b, frames))
    positions = torch.tensor(paths, dtype=torch.float32).reshape(len(objects), frames, 2)
    if target is not None and instruction is None:
        instruction = instruction_text(objects[target], directions)
    return ClipPlan(objects=tuple(objects), positions=positions, background=tuple(background), frames=frames,
                    size=size, target=target, directions=directions, distance=float(distance),
                    boundaries=bounds if target is not None else (), instruction=instruction or "")


def with_directions(plan: ClipPlan, directions: tuple[str, ...] | list[str]) -> ClipPlan:
    """The same scene and start, the named object moved in other ``directions`` (same instruction text: for
    building wrong answers). Positions are not clamped."""
    starts = [tuple(p) for p in plan.positions[:, 0].tolist()]
    new = build_plan(list(plan.objects), starts, plan.target, directions, plan.distance, plan.frames, plan.size,
                     plan.background, instruction=plan.instruction)
    return new


# ----------------------------------------------------------------------------------------------------------
# instructions and the rule-based decomposer


def instruction_text(obj: SceneObject, directions: tuple[str, ...] | list[str], lift_single: bool = False) -> str:
    """The instruction for ``obj`` moving in ``directions``: ``up`` then ``down`` reads "lift ..., then drop
    it"; a single ``up`` reads "lift ..." when ``lift_single``; everything else "move the ... d1[, then d2]"."""
    directions = tuple(directions)
    if directions == ("up", "down"):
        return f"lift the {obj.name}, then drop it"
    if directions == ("up",) and lift_single:
        return f"lift the {obj.name}"
    text = f"move the {obj.name} {directions[0]}"
    for d in directions[1:]:
        text += f", then {d}"
    return text


_WORD = r"[a-z]+"
_FIRST = re.compile(rf"^(move|lift|drop)\s+the\s+({_WORD})\s+({_WORD})(?:\s+({_WORD}))?$")
_LATER = re.compile(rf"^(?:(?:move\s+it\s+)?(left|right|up|down)|(lift|drop)\s+it)$")


def parse_instruction(text: str) -> tuple[str, str, tuple[str, ...]]:
    """``(colour, shape, directions)`` of an instruction in the task's grammar: a first clause ``move the
    <colour> <shape> <direction>`` / ``lift the <colour> <shape>`` / ``drop the <colour> <shape>``, then
    clauses ``, then <direction>`` / ``, then move it <direction>`` / ``, then lift it`` / ``, then drop it``.
    Raises ``ValueError`` on anything else."""
    clauses = [c.strip() for c in re.split(r",\s*then\s+|\s+then\s+", text.strip().lower().rstrip("."))]
    m = _FIRST.match(clauses[0])
    if not m:
        raise ValueError(f"not an instruction of this task: {text!r}")
    verb, colour, shape, direction = m.groups()
    if colour not in PALETTE or shape not in SHAPES:
        raise ValueError(f"unknown object {colour!r} {shape!r} in {text!r}")
    if verb == "move":
        if direction not in DIRECTIONS:
            raise ValueError(f"no direction in {text!r}")
        dirs = [direction]
    else:
        if direction is not None:
            raise ValueError(f"unexpected word {direction!r} in {text!r}")
        dirs = ["up" if verb == "lift" else "down"]
    for clause in clauses[1:]:
        m = _LATER.match(clause)
        if not m:
            raise ValueError(f"cannot read {clause!r} in {text!r}")
        dirs.append(m.group(1) or ("up" if m.group(2) == "lift" else "down"))
    return colour, shape, tuple(dirs)


OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "up": "down", "down": "up", "lift": "drop",
                             "drop": "lift"}


def reverse_directions(text: str) -> str:
    """``text`` with every direction word turned round (left/right, up/down, lift/drop) and nothing else changed:
    "move the red square left and move the blue circle up" -> "... right and ... down". A base model that reads
    the directions in its captions denoises worse from the reversed caption; one that ignores them, the same."""
    return re.sub(r"[a-z]+", lambda m: OPPOSITE.get(m.group(0), m.group(0)), text)


def state_texts(instruction: str) -> list[str]:
    """One state sentence per phase of ``instruction``: "the red square moves left", "the blue circle is lifted
    up", "the blue circle drops back down" (a lift or drop phrasing exactly where the instruction used one)."""
    colour, shape, dirs = parse_instruction(instruction)
    words = [w.strip() for w in re.split(r",\s*then\s+|\s+then\s+", instruction.strip().lower().rstrip("."))]
    name = f"the {colour} {shape}"
    out = []
    for clause, d in zip(words, dirs):
        if clause.startswith("lift"):
            out.append(f"{name} is lifted up")
        elif clause.startswith("drop"):
            out.append(f"{name} drops back down")
        else:
            out.append(f"{name} moves {d}")
    return out


def decompose(instruction: str, frames: int = 8, temporal_stride: int = 1) -> str:
    """Rule-based stand-in for the multimodal LLM's state prompts.

    AID asks an MLLM for the video's successive states; here the instruction's grammar is known, so a parser
    writes them: one state per phase (:func:`state_texts`), each placed on its phase's first frame with the
    pack's own scheduler, so the output is exactly the text ``adapters.state_prompts.parse_schedule`` and the
    ComfyUI schedule nodes read::

        "0": "the red square moves left",
        "4": "the red square moves up"

    ``temporal_stride`` is passed on to the scheduler (1 for pixel frames)."""
    return schedule(state_texts(instruction), frames, temporal_stride)


def frame_states(schedule_text: str, frames: int) -> list[str]:
    """The state in force at each of ``frames`` frames of a schedule (the last one starting at or before it)."""
    entries = parse_schedule(schedule_text)
    if not entries:
        raise ValueError("empty schedule")
    out = []
    for t in range(frames):
        current = entries[0][1]
        for f, s in entries:
            if f <= t:
                current = s
        out.append(current)
    return out


# ----------------------------------------------------------------------------------------------------------
# text features


def tokenize(text: str) -> list[str]:
    """Lower-case words (letters and digits); punctuation is dropped."""
    return re.findall(r"[a-z0-9]+", text.lower())


@lru_cache(maxsize=4096)
def _word_vector(word: str, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{word}".encode("utf-8")))
    return torch.randn(dim, generator=g)


def _position_code(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freqs = torch.exp(-math.log(100.0) * torch.arange(dim, dtype=torch.float32) / max(dim, 1))
    return 0.1 * torch.sin(pos * freqs[None] + (torch.arange(dim) % 2) * (math.pi / 2))


TEXT_CODES = (1, 2)  # versions of the stand-in encoder (:func:`text_features`); a base records the one it was trained with


def text_features(text: str, dim: int = 32, length: int | None = None, seed: int = 0, code: int = 1) -> torch.Tensor:
    """Text-encoder stand-in: ``text`` -> ``[L, dim]`` features.

    Each word gets a fixed unit-variance random vector, seeded by ``zlib.crc32`` of the word (stable across
    runs and machines, unlike Python's ``hash``), plus a small sinusoidal position code; so instructions that
    name another colour, shape or direction get other features. ``L`` is the word count, or ``length`` with
    zero rows as padding (longer texts are cut). Use :func:`text_batch` for a padded batch with its mask.

    ``code`` is the encoder's version. 1: the above, each word on its own. 2: also clause-aware, as a real
    encoder's context is: every word after the k-th "then" adds the fixed vector of clause k, so "left, then up"
    and "up, then left" differ in more than word positions. Texts without "then" get the same features under
    both codes."""
    if code not in TEXT_CODES:
        raise ValueError(f"unknown text code {code!r}: this version knows {TEXT_CODES}")
    words = tokenize(text)
    if length is not None:
        words = words[:length]
    n = len(words) if length is None else length
    out = torch.zeros(n, dim)
    if words:
        out[:len(words)] = torch.stack([_word_vector(w, dim, seed) for w in words]) + _position_code(len(words), dim)
    if code >= 2:
        clause = 0
        for i, w in enumerate(words):
            clause += w == "then"
            if clause:
                out[i] += _word_vector(f"<clause {clause}>", dim, seed)
    return out


def text_batch(texts: list[str], dim: int = 32, length: int = 12, seed: int = 0,
               code: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, length, dim]`` features of ``texts`` (see :func:`text_features`, ``code`` its version) and the
    ``[N, length]`` bool mask of real words (an empty text has an all-False row)."""
    feats = (torch.stack([text_features(t, dim, length, seed, code) for t in texts]) if texts
             else torch.zeros(0, length, dim))
    counts = torch.tensor([min(len(tokenize(t)), length) for t in texts], dtype=torch.long)
    mask = torch.arange(length)[None] < counts[:, None]
    return feats, mask


AID_TEXT_DIM, AID_TEXT_LENGTH = 32, 12  # the stand-in text features the miniature's AID adapters read
AID_IMAGE_DIM = 64  # the SVD-architecture base's cross-attention width: its stand-in image embedding


@lru_cache(maxsize=4)
def _image_projection(dim: int) -> torch.Tensor:
    return torch.randn(3 * 64, dim, generator=torch.Generator().manual_seed(1234)) / math.sqrt(3 * 64)


def image_embedding(first_frames: torch.Tensor, dim: int = AID_IMAGE_DIM) -> torch.Tensor:
    """Image-encoder stand-in (the SVD-architecture base's CLIP vision): ``[N, 3, H, W]`` frames in 0..1 ->
    ``[N, dim]``, a fixed random projection of the frame average-pooled to 8 x 8 (mapped to -1..1)."""
    pooled = torch.nn.functional.adaptive_avg_pool2d(first_frames.float() * 2 - 1, 8).flatten(1)
    return pooled @ _image_projection(int(dim))


# ----------------------------------------------------------------------------------------------------------
# rendering


_SHAPE_ID = {s: i for i, s in enumerate(SHAPES)}


def render(plans: list[ClipPlan]) -> torch.Tensor:
    """``[N, T, 3, H, W]`` videos of ``plans`` (all of one frame count and size), vectorised over clips,
    objects and frames. Each object's coverage is ``clamp(0.5 - d, 0, 1)`` for ``d`` its signed distance in
    pixels (negative inside), composited in order over the background."""
    if not plans:
        raise ValueError("no plans")
    frames, size = plans[0].frames, plans[0].size
    if any(p.frames != frames or p.size != size for p in plans):
        raise ValueError("all plans of one render must share frames and size")
    n, k = len(plans), max(len(p.objects) for p in plans)
    pos = torch.zeros(n, k, frames, 2)
    radius = torch.ones(n, k)
    shape = torch.zeros(n, k, dtype=torch.long)
    colour = torch.zeros(n, k, 3)
    present = torch.zeros(n, k)
    # right-align the objects so the last drawn (the top one) is always slot k - 1
    for i, p in enumerate(plans):
        off = k - len(p.objects)
        for j, o in enumerate(p.objects):
            pos[i, off + j] = p.positions[j]
            radius[i, off + j] = o.size
            shape[i, off + j] = _SHAPE_ID[o.shape]
            colour[i, off + j] = torch.tensor(o.rgb)
            present[i, off + j] = 1.0
    background = torch.tensor([p.background for p in plans], dtype=torch.float32)
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    alpha = torch.zeros(n, k, frames, size, size)
    for s, name in enumerate(SHAPES):  # each shape's distance only where that shape is
        sel = (shape == s) & (present > 0)
        if not bool(sel.any()):
            continue
        p_s = pos[sel]  # [M, T, 2]
        dx = grid.view(1, 1, 1, size) - p_s[..., 0, None, None]  # [M, T, 1, W]
        dy = grid.view(1, 1, size, 1) - p_s[..., 1, None, None]  # [M, T, H, 1]
        r = radius[sel][:, None, None, None]
        if name == "square":
            sdf = torch.maximum(dx.abs(), dy.abs()) - r
        elif name == "circle":
            sdf = torch.sqrt(dx * dx + dy * dy) - r
        else:  # apex up: edges with outward normals (0, 1) and (+-sqrt(3)/2, -1/2), y pointing down
            sdf = torch.maximum(dy, dx.abs() * (math.sqrt(3.0) / 2) - dy / 2) - TRIANGLE_INRADIUS * r
        alpha[sel] = (0.5 - sdf).clamp(0.0, 1.0)
    video = background[:, None, :, None, None].expand(n, frames, 3, size, size).clone()
    for j in range(k):  # absent slots have zero coverage
        a = alpha[:, j, :, None]  # [N, T, 1, H, W]
        video = video * (1 - a) + colour[:, j, None, :, None, None] * a
    return video.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------
# sets


def _scene_objects(rng: random.Random, count: int, size: int) -> list[SceneObject]:
    colours = rng.sample(COLOURS, count)
    return [SceneObject(c, rng.choice(SHAPES), round(rng.uniform(*SIZE_RANGE) * size, 3)) for c in colours]


def _background(rng: random.Random) -> tuple[float, float, float]:
    g = rng.uniform(*BACKGROUND_RANGE)
    return (g, g, g)


def _clear_of(start: tuple[float, float], reach: float, path: list[tuple[float, float]]) -> bool:
    return all(math.hypot(start[0] - x, start[1] - y) >= reach for x, y in path)


def _instruction_plan(rng: random.Random, frames: int, size: int, max_objects: int, max_phases: int = 2) -> ClipPlan:
    count = rng.randint(1, max_objects)
    objects = _scene_objects(rng, count, size)
    target = count - 1  # drawn last: on top
    obj = objects[target]
    n_phases = min(rng.choice((1, 2)), max_phases)  # (the draw is kept, so the default stream does not change)
    if n_phases == 1:
        directions = (rng.choice(tuple(DIRECTIONS)),)
    else:
        first = rng.choice(tuple(DIRECTIONS))
        directions = (first, rng.choice([d for d in DIRECTIONS if d != first]))
    distance = round(rng.uniform(*DISTANCE_RANGE) * size, 3)
    steps = [(DIRECTIONS[d][0] * distance, DIRECTIONS[d][1] * distance) for d in directions]
    xs, ys = _start_range(obj.size, steps, size, 0), _start_range(obj.size, steps, size, 1)
    start = (rng.uniform(*xs), rng.uniform(*ys))
    bounds = phase_boundaries(n_phases, frames)
    path = _trajectory(start, steps, bounds, frames)
    starts: list[tuple[float, float]] = []
    for o in objects[:target]:
        lo, hi = _start_range(o.size, [], size, 0)
        reach = EXTENT * (o.size + obj.size) + 1.0
        for _ in range(30):  # keep still objects off the named object's path when there is room
            s = (rng.uniform(lo, hi), rng.uniform(lo, hi))
            if _clear_of(s, reach, path) and all(_clear_of(s, reach, [q]) for q in starts):
                break
        starts.append(s)
    starts.append(start)
    text = instruction_text(obj, directions, lift_single=rng.random() < 0.5)
    return build_plan(objects, starts, target, directions, distance, frames, size, _background(rng), text)


def _broad_plan(rng: random.Random, frames: int, size: int, max_objects: int, max_phases: int = 2) -> ClipPlan:
    count = rng.randint(1, max_objects)
    objects = _scene_objects(rng, count, size)
    n_phases = rng.choice((1, 2)) if frames >= 4 else 1
    n_phases = min(n_phases, max_phases)  # (the draw above is kept, so the default stream does not change)
    starts, steps = [], []
    for o in objects:
        st: list[tuple[float, float]] = []
        if rng.random() >= 0.25:  # a quarter of the objects stay still
            for _ in range(n_phases if rng.random() < 0.5 else 1):
                if rng.random() < 0.5:
                    angle = rng.choice((0.0, 0.5, 1.0, 1.5)) * math.pi
                else:
                    angle = rng.uniform(0.0, 2.0 * math.pi)
                dist = rng.uniform(0.08, 0.35) * size
                st.append((dist * math.cos(angle), dist * math.sin(angle)))
        while True:  # shorten the motion until the whole path fits in the frame
            xs, ys = _start_range(o.size, st, size, 0), _start_range(o.size, st, size, 1)
            if xs[0] <= xs[1] and ys[0] <= ys[1]:
                break
            st = [(0.7 * sx, 0.7 * sy) for sx, sy in st]
        starts.append((rng.uniform(*xs), rng.uniform(*ys)))
        steps.append(st)
    return build_plan(objects, starts, frames=frames, size=size, background=_background(rng), steps=steps)


# instructions a training set may leave out, so that held-out clips test generalisation rather than recall: these
# (colour, shape) targets and this two-phase motion are each seen in training only in other combinations
NOVEL_TARGETS: tuple[tuple[str, str], ...] = (("red", "triangle"), ("blue", "circle"), ("yellow", "square"))
NOVEL_MOTIONS: tuple[tuple[str, ...], ...] = (("right", "down"),)


def is_novel(plan: "ClipPlan") -> bool:
    """Whether an instruction clip's target or motion is one of :data:`NOVEL_TARGETS` / :data:`NOVEL_MOTIONS`."""
    obj = plan.target_object
    return (obj.colour, obj.shape) in NOVEL_TARGETS or tuple(plan.directions) in NOVEL_MOTIONS


def _make(kind: str, n: int, seed: int, frames: int, size: int, max_objects: int, novel: bool | None = None,
          max_phases: int = 2) -> TVPClips:
    if not 1 <= max_objects <= len(COLOURS):
        raise ValueError(f"max_objects must be 1..{len(COLOURS)}")
    if max_phases not in (1, 2):
        raise ValueError("max_phases must be 1 or 2")
    rng = random.Random(f"tvp/{kind}/{seed}/{frames}/{size}" + ("/single" if max_phases == 1 else ""))
    plan_of = _instruction_plan if kind == "instruction" else _broad_plan
    if novel is None:
        plans = [plan_of(rng, frames, size, max_objects, max_phases) for _ in range(n)]
    else:  # draw until n plans are (or are not) novel: the same stream, filtered
        plans = []
        while len(plans) < n:
            plan = plan_of(rng, frames, size, max_objects, max_phases)
            if is_novel(plan) == novel:
                plans.append(plan)
    videos = render(plans) if plans else torch.zeros(0, frames, 3, size, size)
    return TVPClips(videos, plans)


def make_instruction_set(n: int, seed: int = 0, frames: int = 8, size: int = 32, max_objects: int = 3,
                         novel: bool | None = None, max_phases: int = 2) -> TVPClips:
    """``n`` instruction clips: 1..``max_objects`` objects, the named one (drawn on top) moving one or two
    phases (half each), ``DISTANCE_RANGE`` of the frame per phase, the others still and placed off its path
    where there is room. Starts are drawn so the whole path stays inside the frame. Deterministic in
    ``(seed, frames, size, novel)``. ``novel=False`` leaves out the instructions of :func:`is_novel` (a training
    set), ``novel=True`` keeps only them (a held-out set of unseen combinations). ``max_phases=1``: one phase
    each (its own random stream), the captions a single-phase base model is pretrained on."""
    return _make("instruction", n, seed, frames, size, max_objects, novel, max_phases)


def swapped_pairs(n: int, seed: int) -> TVPClips:
    """``2 n`` clips: the first ``n`` two-phase instruction clips of ``seed`` whose phases also fit the frame in the
    other order, each followed by the same first frame with the phases swapped ("left, then up" and "up, then
    left"): one start, two instructions. (The tiny instruction demo's scenes and the FCA preview's rows.)"""
    pool = make_instruction_set(max(8 * n, 32), seed)  # the stream is prefix-stable: a larger pool finds the same
    plans = []
    for p in pool.plans:
        if len(p.directions) != 2:
            continue
        other = build_plan(list(p.objects), [tuple(q) for q in p.positions[:, 0].tolist()], p.target,
                           tuple(reversed(p.directions)), p.distance, p.frames, p.size, p.background)
        r = 0.5 * p.target_object.size
        if bool(((other.positions >= r) & (other.positions <= p.size - r)).all()):
            plans += [p, other]
        if len(plans) == 2 * n:
            return TVPClips(render(plans), plans)
    raise RuntimeError(f"only {len(plans) // 2} such clips in {len(pool.plans)} draws")


# the tiny demo's shipped files (adapters/weights; the adapters in adapters/weights/video_adapters): its choice of
# base -> (frozen base, the FCA adapters trained on it); and the sampler settings both were measured with
DEMO_FILES: dict[str, tuple[str, str]] = {
    "turns": ("tvp_wan_turns_base.safetensors", "tvp_fca_turns.safetensors"),
    "single-phase": ("tvp_wan_first_frame_base.safetensors", "tvp_fca_full.safetensors"),
}
# the AID demo's frozen SVD-architecture base and its full AID adapters (shift: the base's own, from its file)
AID_DEMO_BASE = "svd-aid"
AID_DEMO_FILES = ("tvp_svd_base.safetensors", "tvp_aid_full.safetensors")
DEMO_STEPS, DEMO_CFG, DEMO_SHIFT = 12, 2.0, 3.0
# the AID demo's dual CFG: the benchmark's (text_cfg 4 follows a little more often, with more colour artefacts)
AID_DEMO_IMAGE_CFG, AID_DEMO_TEXT_CFG = 1.5, 2.0
DEMO_SCENE_SEED = 1000  # the tiny demo's scenes: held-out draws of seed 1000 + n, never a training set's seed


DEMO_PAIRS = ("phases swapped", "one motion each")  # the two instructions a demo scene gives for its first frame


def demo_scene(n: int, pair: str = DEMO_PAIRS[0]) -> TVPClips:
    """The tiny instruction demo's scene ``n``: :func:`swapped_pairs` ``(1, DEMO_SCENE_SEED + n)``, a held-out first
    frame with two instructions (two clips). ``pair``: "phases swapped", a two-phase instruction and the same with
    its phases swapped; "one motion each", the same object moved in each of those two directions alone (two
    one-phase instructions that differ in their only motion)."""
    clips = swapped_pairs(1, DEMO_SCENE_SEED + int(n))
    if pair == DEMO_PAIRS[0]:
        return clips
    if pair != DEMO_PAIRS[1]:
        raise ValueError(f"pair {pair!r}: one of {DEMO_PAIRS}")
    p = clips.plans[0]
    plans = [build_plan(list(p.objects), [tuple(q) for q in p.positions[:, 0].tolist()], p.target, (d,), p.distance,
                        p.frames, p.size, p.background) for d in p.directions]
    return TVPClips(render(plans), plans)


def make_broad_set(n: int, seed: int = 0, frames: int = 8, size: int = 32, max_objects: int = 3,
                   max_phases: int = 2) -> TVPClips:
    """``n`` instruction-free clips for pretraining an image-to-video base model: 1..``max_objects`` objects,
    each still (a quarter) or moving one or two straight phases in any direction (half of them along an
    axis), 8-35 % of the frame per phase, several objects may move at once, all inside the frame. Plans have
    no target and an empty instruction. ``max_phases=1``: every object moves along one straight line at
    constant speed (a base that never sees a change of direction; its own random stream)."""
    return _make("broad", n, seed, frames, size, max_objects, max_phases=max_phases)


def make_benchmark(seed: int = 0, broad: int = 512, train: int = 48, heldout: int = 64, frames: int = 8,
                   size: int = 32, max_objects: int = 3) -> TVPBenchmark:
    """All sets of one benchmark (see :class:`TVPBenchmark`), each from its own random stream, so the
    training and both held-out sets are disjoint draws of the same distribution."""
    return TVPBenchmark(
        broad=make_broad_set(broad, seed, frames, size, max_objects),
        train=make_instruction_set(train, 3 * seed, frames, size, max_objects),
        heldout=make_instruction_set(heldout, 3 * seed + 1, frames, size, max_objects),
        reference=make_instruction_set(heldout, 3 * seed + 2, frames, size, max_objects),
        settings=dict(seed=seed, broad=broad, train=train, heldout=heldout, frames=frames, size=size,
                      max_objects=max_objects))


def repeat_first_frame(first_frames: torch.Tensor, frames: int = 8) -> torch.Tensor:
    """Baseline prediction: ``[N, 3, H, W]`` (or ``[3, H, W]``) first frames held for ``frames`` frames ->
    ``[N, T, 3, H, W]`` (or ``[T, 3, H, W]``)."""
    return first_frames.unsqueeze(-4).expand(*first_frames.shape[:-3], frames, *first_frames.shape[-3:]).clone()


# ----------------------------------------------------------------------------------------------------------
# a latent code


class PatchCode:
    """A centred linear patch code, the miniature's stand-in for a VAE: each ``patch`` x ``patch`` RGB patch (in
    -1..1) minus the mean patch, projected on the first ``channels`` principal directions of the fitted clips and
    divided by one global factor, so the latents are centred with unit RMS (what SVD's and Wan's latent formats
    hand their models). Decoding is the exact transpose plus the mean, so a clip survives a round trip up to the
    detail outside the kept directions (16 channels of 4 x 4 patches: about 33 dB on the task's clips).

    Why not the raw pixel patches: 48 nearly identical, uncentred channels (mean about -2.4, RMS 2.7 in model
    space) are a code a tiny UNet never learns to denoise (docs/aid.md, "Why the frozen base could not draw").
    """

    def __init__(self, mean: torch.Tensor, basis: torch.Tensor, scale: float, patch: int):
        self.mean, self.basis, self.scale, self.patch = mean.float(), basis.float(), float(scale), int(patch)
        self.channels = int(basis.shape[1])

    @classmethod
    def fit(cls, videos: torch.Tensor, channels: int = 16, patch: int = 4) -> "PatchCode":
        x = cls._patches(videos, patch).reshape(-1, 3 * patch * patch).double()
        mean = x.mean(0)
        xc = x - mean
        basis = principal_directions(xc, channels)
        scale = float((xc @ basis).pow(2).mean().sqrt())
        return cls(mean, basis, scale, patch)

    @staticmethod
    def _patches(videos: torch.Tensor, patch: int) -> torch.Tensor:
        """``[N, T, 3, H, W]`` in 0..1 -> ``[N, T, H/p, W/p, 3 p p]`` in -1..1."""
        n, t = videos.shape[:2]
        x = torch.nn.functional.pixel_unshuffle(videos.flatten(0, 1).float() * 2 - 1, patch)
        return x.permute(0, 2, 3, 1).reshape(n, t, *x.shape[2:], x.shape[1])

    def encode(self, videos: torch.Tensor) -> torch.Tensor:
        """``[N, T, 3, H, W]`` in 0..1 -> latents ``[N, T, C, H/p, W/p]`` (centred, unit RMS)."""
        z = (self._patches(videos, self.patch) - self.mean) @ self.basis / self.scale
        return z.permute(0, 1, 4, 2, 3).contiguous()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`encode`: ``[N, T, C, h, w]`` -> ``[N, T, 3, H, W]`` clamped to 0..1."""
        n, t = latents.shape[:2]
        x = latents.float().permute(0, 1, 3, 4, 2) * self.scale @ self.basis.T + self.mean
        v = torch.nn.functional.pixel_shuffle(x.flatten(0, 1).permute(0, 3, 1, 2), self.patch)
        return ((v + 1) / 2).clamp(0, 1).reshape(n, t, *v.shape[1:])

    def state_dict(self) -> dict:
        return {"code/mean": self.mean.contiguous(), "code/basis": self.basis.contiguous(),
                "code/scale": torch.tensor([self.scale]), "code/patch": torch.tensor([self.patch])}

    @classmethod
    def from_state_dict(cls, d: dict) -> "PatchCode":
        return cls(d["code/mean"].float(), d["code/basis"].float(), float(d["code/scale"][0]), int(d["code/patch"][0]))


def task_code(channels: int = 16, patch: int = 4) -> PatchCode:
    """The miniature's latent code: :class:`PatchCode` fitted on 384 broad clips of seed 0 (deterministic)."""
    return PatchCode.fit(make_broad_set(384, seed=0).videos, channels, patch)


