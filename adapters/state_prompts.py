"""State prompts (AID): a multimodal LLM turns one instruction and the first frame into the video's successive
states, which are then placed on frames. Host-free: the prompt we send, the answer format we ask for, a
parser that copes with what models actually answer, and the frame schedule.

AID's own prompt template is unpublished; the one below is ours. It asks for exactly ``n`` short states as a
JSON object ``{"states": [...]}`` (with a JSON schema where the backend supports structured output) and says
what a state is: what the scene looks like at that moment, not an action to perform.
"""

from __future__ import annotations

import json
import re
from typing import Any

DEFAULT_SYSTEM_PROMPT = (
    "You plan short videos. You look at the first frame of a video and read an instruction that says what "
    "happens in the video. You describe the video as a sequence of states: each state says, in one short "
    "sentence, what the scene looks like at that moment (objects, their positions, the hands or tools acting on "
    "them), in the order they occur. The first state is the scene as it is in the image; the last state is the "
    "scene once the instruction is complete.")


class StatePromptError(ValueError):
    """The model's answer could not be turned into the requested states; the message shows the answer."""


def user_prompt(instruction: str, n: int) -> str:
    return (f"Instruction: {instruction.strip()}\n"
            f"Describe the video as exactly {n} successive states, from the first frame to the end. Answer with "
            f'JSON only, in the form {{"states": ["state 1", ..., "state {n}"]}}, with {n} strings of at most 30 words.')


def retry_prompt(n: int, got: int) -> str:
    return (f"Your answer had {got} states, but exactly {n} are needed. Answer again with JSON only: "
            f'{{"states": [...]}} with exactly {n} strings.')


def messages(instruction: str, n: int, system_prompt: str | None = None, with_image: bool = True) -> list[dict]:
    """Chat messages in the OpenAI / transformers format; the image, if any, is the first content part of the
    user message (``{"type": "image"}``: backends attach the actual picture there)."""
    content: list[dict[str, Any]] = [{"type": "image"}] if with_image else []
    content.append({"type": "text", "text": user_prompt(instruction, n)})
    return [{"role": "system", "content": system_prompt or DEFAULT_SYSTEM_PROMPT},
            {"role": "user", "content": content}]


def json_schema(n: int, max_chars: int = 240) -> dict:
    """JSON schema of the answer, for backends with structured output. String lengths are capped: a small
    or random model may otherwise never close a string."""
    return {"type": "object", "additionalProperties": False, "required": ["states"],
            "properties": {"states": {"type": "array", "minItems": n, "maxItems": n,
                                      "items": {"type": "string", "minLength": 1, "maxLength": max_chars}}}}


_ITEM = re.compile(r"^\s*(?:[-*\u2022\u25cf]|\(?\d{1,2}[.):\]]|(?:state|step|frame)\s*\d{1,2}\s*[:.)\-\u2013]|\d{1,2}\s*[-\u2013])\s*",
                   re.IGNORECASE)


def _clean(item: Any) -> str:
    if isinstance(item, dict):  # {"state": "..."} / {"description": "..."}: the first string value
        item = next((v for v in item.values() if isinstance(v, str)), "")
    text = str(item).strip().strip(",").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return re.sub(r"\s+", " ", text)


def _from_json(value: Any) -> list[str] | None:
    if isinstance(value, dict):
        for key in ("states", "state_prompts", "steps", "prompts"):
            if isinstance(value.get(key), list):
                return [_clean(v) for v in value[key]]
        lists = [v for v in value.values() if isinstance(v, list)]
        return [_clean(v) for v in lists[0]] if len(lists) == 1 else None
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return None


def _json_candidates(text: str):
    fenced = re.findall(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL)
    yield from fenced
    yield text
    for opener, closer in (("{", "}"), ("[", "]")):
        start = text.find(opener)
        end = text.rfind(closer)
        if 0 <= start < end:
            yield text[start:end + 1]


def parse_states(text: str) -> list[str]:
    """The states in a model's answer: a JSON object or list (also inside a code fence or surrounded by other
    text), else numbered, bulleted or "State k:" lines, else non-empty lines. Empty items are dropped."""
    for candidate in _json_candidates(text):
        try:
            value = json.loads(candidate.strip(), strict=False)
        except (json.JSONDecodeError, ValueError):
            continue
        states = _from_json(value)
        if states is not None:
            return [s for s in states if s]
    lines = [line for line in text.splitlines() if line.strip()]
    items = [_ITEM.sub("", line, count=1) for line in lines if _ITEM.match(line)]
    if items:
        return [s for s in (_clean(i) for i in items) if s]
    # no structure: one state per line, leaving out a lead-in such as "Here are the states:"
    plain = [_clean(line) for line in lines if not line.rstrip().endswith(":")]
    return [s for s in plain if s]


def exactly(states: list[str], n: int, raw: str) -> list[str]:
    if len(states) != n:
        shown = raw if len(raw) <= 600 else raw[:600] + " ..."
        raise StatePromptError(f"the model gave {len(states)} states instead of {n}, also after a retry. Its answer "
                               f"was: {shown!r}. Try another seed, more max_tokens, a larger model, or fewer states")
    return states


def latent_index(pixel_frame: int, stride: int) -> int:
    """The latent frame a pixel frame falls in: frame 0 alone, then groups of ``stride`` (Wan's VAE: 4)."""
    if stride <= 1:
        return max(0, int(pixel_frame))
    return 0 if pixel_frame <= 0 else (int(pixel_frame) - 1) // stride + 1


def first_pixel(latent_frame: int, stride: int) -> int:
    """The first pixel frame of a latent frame (inverse of :func:`latent_index` on group starts)."""
    if stride <= 1 or latent_frame <= 0:
        return max(0, int(latent_frame))
    return 1 + stride * (int(latent_frame) - 1)


def state_frames(n: int, frames: int, temporal_stride: int = 1) -> list[int]:
    """The first pixel frame of each of ``n`` states over a video of ``frames`` pixel frames: the states are
    spread evenly over the latent frames (``temporal_stride`` pixel frames each, Wan: 4) and each starts on
    the first pixel frame of its latent frame, so no state begins inside one."""
    if n < 1 or frames < 1:
        raise ValueError("states and frames must be positive")
    slots = latent_index(frames - 1, temporal_stride) + 1
    if n > slots:
        raise ValueError(f"{n} states do not fit {frames} frames ({slots} latent frames); use fewer states or more "
                         "frames")
    # slot i * slots / n rounded half up: as even as whole latent frames allow, strictly increasing, never past the end
    return [first_pixel(int(i * slots / n + 0.5), temporal_stride) for i in range(n)]


SCHEDULE_SEPARATOR = "---"  # a line of its own between the schedules of several videos (one per training clip)


def format_schedule(entries: list[tuple[int, str]]) -> str:
    """``[(frame, prompt)]`` in the format prompt-schedule nodes read: ``"0": "...",`` one per line."""
    return ",\n".join(f"{json.dumps(str(f))}: {json.dumps(s)}" for f, s in entries)


def schedule(states: list[str], frames: int, temporal_stride: int = 1) -> str:
    """Frame-indexed prompts in the format prompt-schedule nodes read: ``"0": "...",`` one per line."""
    return format_schedule(list(zip(state_frames(len(states), frames, temporal_stride), states)))


_KEY = re.compile(r'\s*(?:"\s*(\d+)\s*"|(\d+))\s*:[ \t]*')
_JSON_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def looks_like_schedule(line: str) -> bool:
    """Whether a line starts like a schedule entry (``"0": ...`` or ``0: ...``)."""
    return _KEY.match(line) is not None


def parse_schedule(text: str, frames: int | None = None) -> list[tuple[int, str]]:
    """The one reader of frame schedules (AID Conditioning, Framewise Prompts, states files, what MLLM State
    Prompt writes): ``[(frame, prompt)]`` sorted by frame.

    Tolerant on form: one line or many, entries separated by commas and/or line breaks, keys and states quoted
    (JSON strings with escapes) or not (an unquoted state runs to the end of its line), optional braces around
    the whole, a byte-order mark. Strict on structure: a frame given twice, a frame without a state, an empty
    state, text that is not ``frame: state``, and (with ``frames``, the video's length) a frame past the video's
    last frame (then the schedule must also start at frame 0) are refused with a ``ValueError`` that names the
    line and says what would fit."""
    body = text.lstrip("\ufeff")
    stripped = body.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        start = body.index("{")
        body = " " * (start + 1) + body[start + 1: body.rindex("}")]
    out: list[tuple[int, str]] = []
    seen: dict[int, int] = {}
    pos, n = 0, len(body)
    while True:
        while pos < n and body[pos] in " \t\r\n,":
            pos += 1
        if pos >= n:
            break
        line = _line_of(body, pos)
        m = _KEY.match(body, pos)
        if not m:
            got = body[pos:].split("\n", 1)[0].strip()
            raise ValueError(f'line {line}: {got[:60]!r} is not "frame": "state" (a frame number, a colon, then '
                             "the state)")
        frame = int(m.group(1) or m.group(2))
        pos = m.end()
        if pos < n and body[pos] == '"':
            q = _JSON_STRING.match(body, pos)
            if not q:
                raise ValueError(f"line {line}: the state of frame {frame} opens a quote that does not close on "
                                 "its line")
            state = json.loads(q.group(0))
            pos = q.end()
            rest = body[pos:].split("\n", 1)[0]
            junk = rest.strip().lstrip(",").strip()
            if junk and not _KEY.match(junk):
                raise ValueError(f"line {line}: unexpected {junk[:40]!r} after the state of frame {frame}; separate "
                                 "entries with a comma or a line break")
        else:
            end = body.find("\n", pos)
            end = n if end < 0 else end
            state = body[pos:end].strip().rstrip(",").strip()
            pos = end
        state = " ".join(str(state).split())
        if not state:
            raise ValueError(f"line {line}: frame {frame} has no state; write a prompt after its colon, or remove "
                             "the entry")
        if frame in seen:
            raise ValueError(f"line {line}: the schedule gives frame {frame} twice (first on line {seen[frame]}); "
                             "give each frame once")
        seen[frame] = line
        out.append((frame, state))
    out.sort()
    if frames is not None and out:
        check_schedule(out)
        last = out[-1][0]
        if last >= frames:
            raise ValueError(f"line {seen[last]}: frame {last} is past the video's last frame {frames - 1} (the video "
                             f"has {frames} frames); start each state at a frame from 0 to {frames - 1}")
    return out


def check_schedule(entries: list[tuple[int, str]]) -> None:
    """Raise ValueError unless ``entries`` (sorted ``[(frame, prompt)]``) start at frame 0 and give each frame
    once."""
    starts = [f for f, _ in entries]
    if not starts:
        raise ValueError("the schedule is empty")
    if starts[0] != 0:
        raise ValueError(f"the schedule starts at frame {starts[0]}; it must start at 0 (the first frame)")
    for f in starts:
        if starts.count(f) > 1:
            raise ValueError(f"the schedule gives frame {f} twice")


def frame_weights(starts: list[int], latent_frames: int, blend: int = 0):
    """``[latent_frames, len(starts)]`` weights of each state per latent frame: state s holds from its start
    (a latent frame index) to the next state's start; with ``blend`` > 0 the weights cross-fade linearly over
    ``blend`` latent frames on each side of every boundary. Rows sum to one."""
    import torch

    n = len(starts)
    if n == 0:
        raise ValueError("no states")
    w = torch.zeros(latent_frames, n)
    for p in range(latent_frames):
        # the state p lies in, and its position measured from the nearest boundary
        s = max(i for i in range(n) if starts[i] <= p) if p >= starts[0] else 0
        w[p, s] = 1.0
        if blend > 0:
            for j in (s - 1, s + 1):  # the neighbouring state across the nearer boundary
                if not 0 <= j < n:
                    continue
                boundary = starts[max(s, j)]
                d = (p - boundary + 0.5) if j < s else (boundary - p - 0.5)  # distance into this state's side
                if d < blend:
                    share = 0.5 * (1.0 - d / blend)
                    w[p, j] += share
                    w[p, s] -= share
    return w
