"""The attach protocol shared by the core and the ComfyUI binding: hook-point names, wire keys, what a hook
callable is given (:class:`Site`) and where run- and call-scoped state lives (:class:`Scopes`).

This module imports torch and the standard library only. The adapter kinds (``adapters/``) declare their
attachments in these terms; the binding (``nodes/binding/``) installs them on a ComfyUI model. Both import the
names from here, so a key or a hook point is written once.

Hook points (``fn`` receives the tensors named, plus a :class:`Site` saying where and for what it runs):

====================  =====================================================  ====================================
point                 callable                                               strength ``s`` applies as
====================  =====================================================  ====================================
``self_attn_kv``      ``fn(q_in, k_in, v_in, site) -> (q_in, k_in, v_in)``:  (not scaled)
                      the self-attention's inputs before the projections
``self_attn_out``     ``fn(h, site) -> h'`` on the self-attention output     ``h + s (h' - h)``
``ffn_parallel``      ``fn(u, site) -> delta``, ``u`` = the FFN's input      ``ffn(u) + s delta``
``temporal``          ``fn(tokens [B*F, N, C], site) -> tokens'``: the       ``x + s (x' - x)``
                      block's video tokens frame by frame (UNet: after the
                      self-attention residual; Wan: the block output)
``block_parallel``    ``fn(args, site) -> delta``: a branch beside a DiT     ``out + s delta``
                      block; ``args`` is the block's full input (Wan:
                      ``img``, ``txt``, ``vec``, ``pe``, ...)
``cross_context``     ``fn(context, site) -> tokens [B, M, C_ctx]`` appended  (not scaled)
                      to the cross-attention context
``capture``           ``fn(hidden, site) -> None``: reads hidden states      (nothing is changed)
                      (UNet: after self-attention; Wan: the block output)
``cross_attn_delta``  ``fn(proj, u, site) -> delta or None``: added to the   ``proj(u) + s delta``
                      output of the cross-attention projection ``proj``
                      (``"q"``, ``"k"``, ``"v"``, ``"out"``) on input ``u``
``conditions``        ``fn(conds, x, context, site, run) -> None``, once per  (nothing is changed)
                      diffusion-model forward, before it runs: the adapter
                      conditions the CONDITIONING carries; ``run(x,
                      timestep, context, call=None)`` runs the same forward
                      again as a nested call (``call``: that call's
                      call-scoped values)
====================  =====================================================  ====================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

POINTS = ("self_attn_kv", "self_attn_out", "ffn_parallel", "temporal", "block_parallel", "cross_context", "capture",
          "cross_attn_delta", "conditions")

# ComfyUI's sampling_function batches [positive, negative]: index 1 of cond_or_uncond is the negative
UNCOND = 1
# the key under which an adapter patcher is registered as an additional model of the base model
ADDITIONAL_MODELS_KEY = "video_adapters"
# adapter conditions travel in a CONDITIONING's model_conds under this prefix (AID's instruction, FCA's frames)
ADAPTER_COND_PREFIX = "video_adapters_"
# Guiders that batch other lists than [positive, negative] (dual CFG: [none, image, image + text]) name the entries
# that carry the text prompt under this transformer_options key; without it, every entry but UNCOND does.
TEXT_CONDS_KEY = "video_adapters_text_conds"
# the transformer_options key under which the binding hands the current forward's Scopes to the hooks
SCOPES_KEY = "video_adapters_scopes"


class VideoAdapterError(ValueError):
    """An input the user can fix; the message says what and how."""


def text_conditional(transformer_options, cond_or_uncond) -> list[bool]:
    """Per entry of ``cond_or_uncond``: does it carry the text prompt (so frame-wise text applies, and a domain
    model's null text does not)?"""
    roles = (transformer_options or {}).get(TEXT_CONDS_KEY)
    chunks = cond_or_uncond or [0]
    if roles is None:
        return [c != UNCOND for c in chunks]
    return [c in roles for c in chunks]


@dataclass(frozen=True)
class Block:
    """One transformer block of the host model an adapter can attach to."""

    name: str                # module path inside diffusion_model ("blocks.3", "input_blocks.1.1.transformer_blocks.0")
    kind: str                # "spatial" (UNet spatial block), "temporal" (SVD time-mixing block), "dit" (Wan block)
    dim: int                 # token width
    heads: int
    context_dim: int | None  # width of the cross-attention context (text), None without cross-attention
    key: Any                 # UNet: (block kind, block id, block index) as in extra_options; Wan: block index


@dataclass
class Attachment:
    """One callable of an adapter set at one hook point of one block (``block`` None: every block)."""

    block: str | None
    point: str
    fn: Callable[..., Any]


@dataclass
class FrameTokens:
    """What a ``cross_context`` callable may return instead of one token tensor: token sets ``tokens[s]``
    (``[M_s, C_ctx]`` or ``[1, M_s, C_ctx]``) and per-latent-frame weights ``weights [T, S]``. The video tokens of
    latent frame p then attend to ``[context ; tokens[s]]`` for every s with ``weights[p, s] > 0``, and the
    cross-attention outputs are mixed with those weights (a frame-wise mask: frame p sees its own tokens and the
    shared context, never another frame's). ``uncond``: also for the unconditional batch entries (default: those
    keep the plain context, so CFG does not cancel the extra tokens; which entries carry text is read with
    :func:`text_conditional`)."""

    tokens: list
    weights: torch.Tensor
    uncond: bool = False


class Scopes:
    """Where hook callables keep state between hooks, in two lifetimes:

    * ``run``: from the start of a sampling run to its end (the binding clears it on ComfyUI's pre-run and
      cleanup callbacks of the patched model); a cache that must not outlive the model's patches lives here;
    * ``call``: one diffusion-model forward (a nested forward started by ``run()`` at the ``conditions`` point
      gets its own, with its own token ``grid``).

    Both are dicts keyed by an object the adapter set owns (never by a string), so two kinds or two attached
    sets never see each other's values."""

    def __init__(self, run: dict | None = None, call: dict | None = None, grid: tuple = (0, 0, 0),
                 nested: bool = False):
        self.run = run if run is not None else {}
        self.call = call if call is not None else {}
        self.grid = tuple(grid)  # the forward's token grid (frames, height, width) where the binding knows it
        self.nested = nested


@dataclass
class Site:
    block: Block | None  # None at the ``conditions`` point (the whole model)
    frames: int
    grid: tuple[int, int, int]
    cond_or_uncond: list
    sigmas: Any
    transformer_options: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return self.grid[1]

    @property
    def width(self) -> int:
        return self.grid[2]

    @property
    def scopes(self) -> Scopes:
        """The run- and call-scoped state of this forward (an empty one outside an attached model's forward)."""
        found = (self.transformer_options or {}).get(SCOPES_KEY)
        if found is None:
            found = Scopes()
            if self.transformer_options is not None:
                self.transformer_options[SCOPES_KEY] = found
        return found

    @property
    def call(self) -> dict:
        return self.scopes.call

    @property
    def run(self) -> dict:
        return self.scopes.run
