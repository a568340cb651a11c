"""One way to attach adapters to a host model, for every adapter kind.

An adapter set (any kind in ``adapters/registry.py``) declares *what* it attaches: a list of
:class:`Attachment` ``(block name, hook point, callable)``. This module knows *where* each hook point is on
each architecture (one table per architecture, :data:`HOOK_POINTS`) and installs the callables with ComfyUI's
patch API on a clone of the MODEL. Nothing of ComfyUI or of the base weights is modified; the adapter modules
live in their own ``ModelPatcher``, registered as an additional model so ComfyUI loads and offloads them with
the base model.

The hook points, what each callable receives and how strength applies are the protocol of
``adapters/protocol.py``.

``Site`` carries the block, frames per video, the token grid ``(frames, height, width)``, the cond/uncond layout
of the batch, the sigmas, ComfyUI's ``transformer_options`` and the forward's :class:`Scopes`.

State: every attached model gets one ``DIFFUSION_MODEL`` wrapper (by key) that opens the call scope of each
forward (and computes Wan's token grid), and pre-run / cleanup callbacks (by key) that clear the run scope, so a
cache never outlives a sampling run.

UNet (SD 1.5, SDXL, SVD): patches are model-wide; each call is routed to the block's attachments by the key
ComfyUI reports (``block``, ``block_index``) and by the token layout, which tells SVD's spatial blocks
(``[B, H*W, C]``) from its temporal blocks (``[B/F*H*W, F, C]``), whose patches fire under the same key.
Frames per video: ``frames`` if given, else one cond/uncond chunk of the batch.
Wan: object patches on ``blocks.i.self_attn`` / ``.ffn`` / ``.cross_attn``, and one ``dit`` ``double_block``
replace patch per block (chained with any earlier one) for the temporal, parallel and capture points. The
grid ``(t, h, w)`` comes from the same ``DIFFUSION_MODEL`` wrapper.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import torch
import torch.nn as nn

import comfy.model_patcher
import comfy.patcher_extension

from ...adapters.protocol import (ADAPTER_COND_PREFIX, ADDITIONAL_MODELS_KEY, POINTS, SCOPES_KEY, Attachment,
                                  Block, FrameTokens, Scopes, Site, VideoAdapterError, text_conditional)
from .host import HostModel, describe, static_clone


def frames_per_video(batch: int, extra_options: dict, frames: int) -> int:
    """Frames per video in a frames-in-batch pass of ``batch`` frames."""
    chunks = len(extra_options.get("cond_or_uncond") or [0])
    if batch % chunks:
        raise VideoAdapterError(f"a batch of {batch} frames does not split into {chunks} cond/uncond chunks")
    per = batch // chunks
    if frames <= 0:
        return per
    if per % frames:
        raise VideoAdapterError(
            f"frames={frames} does not divide the {per} latent frames of each cond/uncond batch; set frames to a "
            f"divisor of {per} (several videos in one batch) or 0 (the whole batch is one video)")
    return frames


def unet_layout(tokens: torch.Tensor, extra_options: dict) -> tuple[str, int, int] | None:
    """``("spatial"|"temporal", height, width)`` of a UNet transformer's tokens, or None for other layouts."""
    shape = extra_options.get("activations_shape")
    if not shape or len(shape) != 4:
        return None
    b, _, h, w = shape
    if tokens.shape[0] == b and tokens.shape[1] == h * w:
        return "spatial", h, w
    if tokens.shape[0] * tokens.shape[1] == b * h * w and tokens.shape[0] % (h * w) == 0:
        return "temporal", h, w
    return None


class _Shared:
    """A patch object that ``ModelPatcher.clone()`` must share, not copy: ComfyUI 0.3.x deep-copies
    ``model_options`` on every clone, which would copy the adapter modules a patch refers to (a clone would then
    train copies, and on a GPU run them where the copies were left)."""

    def __deepcopy__(self, memo):
        return self


def _mix(x: torch.Tensor, y: torch.Tensor, strength: float) -> torch.Tensor:
    return y if strength == 1.0 else x + strength * (y - x)


# ----------------------------------------------------------------------------------------------------
# UNet (frames in the batch; SVD's temporal layers)


class _UNetRouter(_Shared):
    """Model-wide UNet patches, each routed to the attachments of the block that calls it."""

    def __init__(self, host: HostModel, plan: list[Attachment], strength: float, frames: int):
        self.strength, self.frames = float(strength), int(frames)
        by_name = {b.name: b for b in host.blocks}
        self.table: dict[tuple[str, Any, str], list[tuple[Block, Attachment]]] = {}
        self.everywhere: dict[str, list[Attachment]] = {}
        self.blocks_by_key = {(b.kind, b.key): b for b in host.blocks}
        for a in plan:
            if a.block is None:
                self.everywhere.setdefault(a.point, []).append(a)
                continue
            blk = by_name[a.block]
            self.table.setdefault((blk.kind, blk.key, a.point), []).append((blk, a))

    def _site(self, tokens, extra_options, point):
        layout = unet_layout(tokens, extra_options)
        block = extra_options.get("block")
        if layout is None or block is None:
            return None, []
        kind, h, w = layout
        key = (block[0], block[1], extra_options.get("block_index", 0))
        found = self.table.get((kind, key, point), [])
        blk = self.blocks_by_key.get((kind, key))
        if blk is None or (not found and point not in self.everywhere):
            return None, []
        batch = extra_options["activations_shape"][0]
        f = frames_per_video(batch, extra_options, self.frames)
        site = Site(blk, f, (f, h, w), list(extra_options.get("cond_or_uncond") or [0]), extra_options.get("sigmas"),
                    extra_options)
        if point in self.everywhere and kind == "spatial":
            found = found + [(blk, a) for a in self.everywhere[point]]
        return site, found

    def attn1(self, n, context, value, extra_options):
        site, found = self._site(n, extra_options, "self_attn_kv")
        for _, a in found:
            n, context, value = a.fn(n, context, value, site)
        return n, context, value

    def attn1_output(self, n, extra_options):
        site, found = self._site(n, extra_options, "self_attn_out")
        for _, a in found:
            n = _mix(n, a.fn(n, site), self.strength)
        return n

    def middle(self, x, extra_options):
        site, found = self._site(x, extra_options, "temporal")
        for _, a in found:
            x = _mix(x, self._frame_tokens(a.fn, x, site), self.strength)
        site, found = self._site(x, extra_options, "capture")
        for _, a in found:
            a.fn(x, site)
        return x

    @staticmethod
    def _frame_tokens(fn, x, site):
        if site.block.kind == "spatial":  # already [B*F, H*W, C]
            return fn(x, site)
        # temporal layers hold [B/F*H*W, F, C]: present them frame by frame as every temporal point gets them
        f, h, w = site.grid
        videos = x.shape[0] // (h * w)
        tokens = x.reshape(videos, h * w, f, -1).permute(0, 2, 1, 3).reshape(videos * f, h * w, -1)
        out = fn(tokens, site)
        return out.reshape(videos, f, h * w, -1).permute(0, 2, 1, 3).reshape(x.shape)

    def attn2(self, n, context, value, extra_options):
        site, found = self._site(n, extra_options, "cross_context")
        for _, a in found:
            extra = a.fn(context, site).to(device=context.device, dtype=context.dtype)
            context = torch.cat([context, extra], dim=1)
            value = torch.cat([value, extra.to(value)], dim=1) if value is not None else None
        return n, context, value


class _Wrapped(nn.Module):
    """Stands in for a module of the base model, keeping its children under the same names (so weight
    paths, LoRA keys, casting and offloading still resolve); the adapter callables live outside the module
    tree (their modules are in their own ModelPatcher)."""

    def __init__(self, original: nn.Module, site_fn, point: str, fns: list, strength: float):
        super().__init__()
        for name, child in original.named_children():
            self.add_module(name, child)
        self._original = [original]
        self._site_fn, self._point, self._fns, self.strength = site_fn, point, list(fns), float(strength)

    def forward(self, x, *args, **kwargs):
        site = self._site_fn(kwargs.get("transformer_options"))
        if self._point == "cross_context":
            context = args[0] if args else kwargs.pop("context")
            rest = args[1:]
            framewise = None
            for fn in self._fns:
                extra = fn(context, site)
                if isinstance(extra, FrameTokens):
                    framewise = extra
                else:
                    context = torch.cat([context, extra.to(context)], dim=1)
            if framewise is None:
                return self._original[0](x, context, *rest, **kwargs)
            return _framewise_cross_attention(self._original[0], x, context, rest, kwargs, framewise, site)
        y = self._original[0](x, *args, **kwargs)
        for fn in self._fns:
            if self._point == "ffn_parallel":  # branch on the FFN's input, added to its output
                y = y + self.strength * fn(x, site)
            else:  # self_attn_out
                y = _mix(y, fn(y, site), self.strength)
        return y


def _framewise_cross_attention(attn, x, context, rest, kwargs, ft: FrameTokens, site: Site):
    """Cross-attention where the video tokens of latent frame p see ``[context ; tokens of p's states]``
    (see :class:`FrameTokens`). Frames sharing a token set are computed together."""
    t, h, w = site.grid
    b, length, c = x.shape
    if t * h * w != length:
        raise VideoAdapterError(f"frame-wise cross-attention expected {t}x{h}x{w} video tokens, got {length}")
    weights = ft.weights.to(device=x.device, dtype=x.dtype)
    if weights.shape[0] != t:
        raise VideoAdapterError(f"frame-wise tokens are given for {weights.shape[0]} latent frames, the video has {t}")
    with_text = text_conditional(site.transformer_options, site.cond_or_uncond)
    per = b // len(with_text)
    out = torch.empty_like(x)
    frames = x.reshape(b, t, h * w, c)
    for i in range(b):
        xi, ci = x[i:i + 1], context[i:i + 1]
        if not ft.uncond and not with_text[min(i // per, len(with_text) - 1)]:
            out[i:i + 1] = attn(xi, ci, *rest, **kwargs)
            continue
        acc = torch.zeros(t, h * w, c, device=x.device, dtype=x.dtype)
        for s, tok in enumerate(ft.tokens):
            sel = torch.nonzero(weights[:, s] > 0).flatten()
            if sel.numel() == 0:
                continue
            tok = tok.reshape(1, -1, tok.shape[-1]).to(ci)
            y = attn(frames[i:i + 1, sel].reshape(1, -1, c), torch.cat([ci, tok], dim=1), *rest, **kwargs)
            acc[sel] += weights[sel, s].reshape(-1, 1, 1) * y.reshape(sel.numel(), h * w, c)
        out[i] = acc.reshape(length, c)
    return out


class _WanBlockPatch(_Shared):
    """``dit``/``double_block`` replace patch of one Wan block: the block (or an earlier patch), then the
    temporal, parallel-branch and capture attachments in that order."""

    def __init__(self, block: Block, found: dict[str, list], strength: float, previous=None):
        self.block, self.found, self.strength, self.previous = block, found, float(strength), previous

    def __call__(self, args, extra):
        out = (self.previous or (lambda a, e: e["original_block"](a)))(args, extra)
        to = args["transformer_options"]
        site = _wan_site(self.block, to)
        img = out["img"]
        if self.found.get("temporal") or self.found.get("block_parallel"):
            out = dict(out)
        for fn in self.found.get("temporal", []):
            t, h, w = site.grid
            b, length, c = img.shape
            if length != t * h * w:
                raise VideoAdapterError(f"the temporal adapter expected {t}x{h}x{w} video tokens, the block has {length}")
            y = fn(img.reshape(b * t, h * w, c), site).reshape(b, length, c)
            img = _mix(img, y, self.strength)
        for fn in self.found.get("block_parallel", []):
            img = img + self.strength * fn(args, site)  # the block's full input: img, txt, vec, pe, ...
        for fn in self.found.get("capture", []):
            fn(img, site)
        if "img" in out and out["img"] is not img:
            out["img"] = img
        return out


def _scopes(to: dict | None) -> Scopes:
    found = (to or {}).get(SCOPES_KEY)
    return found if found is not None else Scopes()


def _wan_site(block: Block, to: dict | None) -> Site:
    to = to if to is not None else {}
    grid = _scopes(to).grid
    return Site(block, int(grid[0]), tuple(grid), list(to.get("cond_or_uncond") or [0]), to.get("sigmas"), to)


def _transformer_options(args, kwargs) -> dict | None:
    # the diffusion models' forward hands transformer_options on positionally (the last dict argument); newer
    # code may pass it by name
    to = kwargs.get("transformer_options")
    if to is None:
        to = next((a for a in reversed(args) if isinstance(a, dict)), None)
    return to


# ----------------------------------------------------------------------------------------------------
# adapter conditions: tensors a CONDITIONING carries to the adapters (AID's instruction and states, FCA's
# initial frames)


def add_adapter_conds(conditioning, tensors: dict[str, torch.Tensor]):
    """A copy of ``conditioning`` whose every entry carries ``tensors`` to the adapters' ``conditions`` callables
    (under ``name``). They travel in ComfyUI's ``model_conds``, as the model's own conditions do, so every sampler
    batches them with the rest of the entry; ComfyUI repeats a tensor's first dimension to the model's batch (give
    ``[1, ...]``, or one row per frame for frames-in-batch models such as SVD)."""
    import comfy.conds

    out = []
    for t, extras in conditioning:
        extras = dict(extras)
        conds = dict(extras.get("model_conds", {}))
        for name, value in tensors.items():
            conds[ADAPTER_COND_PREFIX + name] = comfy.conds.CONDRegular(value)
        extras["model_conds"] = conds
        out.append([t, extras])
    return out


def adapter_conds(extras: dict) -> dict:
    """The adapter conditions of one CONDITIONING entry: ``{prefixed name: CONDRegular}`` (what the sampler
    passes to the model)."""
    return {k: v for k, v in (extras.get("model_conds") or {}).items() if k.startswith(ADAPTER_COND_PREFIX)}


def _text_cond_names() -> set[str]:
    """Adapter conditions that any registered kind counts as text (AID's instruction and state prompts)."""
    from ...adapters import registry

    return {ADAPTER_COND_PREFIX + n for k in registry.all_kinds() for n in k.text_conds}


def has_adapter_text(conditioning) -> bool:
    """Whether ``conditioning`` carries adapter text (a kind's instruction features) on any entry."""
    names = _text_cond_names()
    return any(names & set(adapter_conds(e)) for _, e in conditioning)


def without_adapter_text(conditioning):
    """``conditioning`` with every adapter text condition zeroed: the kinds' own "no text" (what text dropout trains
    and what a guider's text-free branch must give)."""
    import comfy.conds

    names = _text_cond_names()
    out = []
    for t, extras in conditioning:
        extras = dict(extras)
        conds = dict(extras.get("model_conds", {}))
        for k in names & set(conds):
            conds[k] = comfy.conds.CONDRegular(torch.zeros_like(conds[k].cond))
        extras["model_conds"] = conds
        out.append([t, extras])
    return out


class _ForwardScopes(_Shared):
    """The ``DIFFUSION_MODEL`` wrapper (by key) of one attached model: opens the :class:`Scopes` of each forward
    (the run scope it owns, a fresh call scope, the token grid), runs the ``conditions`` callables, then the
    forward. When an enclosing attached model already opened this forward's scopes, they are shared. Its
    :meth:`clear_run` is installed as the model's pre-run and cleanup callbacks."""

    def __init__(self, host: HostModel, fns: list, frames: int):
        self.architecture, self.patch_size = host.architecture, tuple(host.patch_size)
        self.fns, self.frames = list(fns), int(frames)
        self.run: dict = {}

    def clear_run(self, *_):
        self.run.clear()

    def grid(self, x, to) -> tuple[int, int, int]:
        if self.architecture == "wan":
            if x.ndim != 5:
                return (0, 0, 0)
            return tuple(math.ceil(d / p) for d, p in zip(x.shape[2:], self.patch_size))
        if not self.fns:  # UNet blocks read their layout off each call; only the conditions point needs this
            return (0, 0, 0)
        per = frames_per_video(x.shape[0], to, self.frames)
        return (per, x.shape[-2], x.shape[-1])

    def __call__(self, executor, x, *args, **kwargs):
        to = _transformer_options(args, kwargs)
        if to is None:
            return executor(x, *args, **kwargs)
        outer = to.get(SCOPES_KEY)
        if outer is not None:  # an enclosing attached model opened the scopes of this forward
            if not outer.nested:
                self._conditions(outer, executor, x, args, kwargs, to)
            return executor(x, *args, **kwargs)
        scopes = Scopes(run=self.run, grid=self.grid(x, to))
        to[SCOPES_KEY] = scopes
        try:
            self._conditions(scopes, executor, x, args, kwargs, to)
            return executor(x, *args, **kwargs)
        finally:
            to.pop(SCOPES_KEY, None)

    def _conditions(self, scopes: Scopes, executor, x, args, kwargs, to):
        if not self.fns:
            return
        conds = {k[len(ADAPTER_COND_PREFIX):]: v for k, v in kwargs.items() if k.startswith(ADAPTER_COND_PREFIX)}
        context = args[1] if len(args) > 1 else kwargs.get("context")
        grid = scopes.grid if self.architecture == "wan" else self.grid(x, to)
        site = Site(None, int(grid[0]), tuple(grid), list(to.get("cond_or_uncond") or [0]), to.get("sigmas"), to)

        def run(x2, timestep=None, context2=None, call: dict | None = None):
            """The same forward on ``x2`` as a nested call with its own call scope (``call``: its values)."""
            a = list(args)
            if timestep is not None:
                a[0] = timestep
            kw = dict(kwargs)
            if context2 is not None:
                if len(a) > 1:
                    a[1] = context2
                else:
                    kw["context"] = context2
            to[SCOPES_KEY] = Scopes(run=scopes.run, call=dict(call or {}), grid=self.grid(x2, to), nested=True)
            try:
                return executor(x2, *a, **kw)
            finally:
                to[SCOPES_KEY] = scopes

        for fn in self.fns:
            fn(conds, x, context, site, run)


class _Proxy:
    """Stands in for a module inside its own class's ``forward``: the attributes given replace the module's, every
    other attribute is the module's own."""

    def __init__(self, module, overrides: dict):
        self.__dict__["_module"] = module
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self.__dict__["_module"], name)


class _DeltaAttention(nn.Module):
    """Stands in for a cross-attention module (same children, so weight paths, LoRA keys and offloading still
    resolve) and runs the module's own forward with each projection ``proj(u) + s * delta(proj, u)``."""

    def __init__(self, original: nn.Module, projections: dict[str, str], site_fn, fns: list, strength: float):
        super().__init__()
        for name, child in original.named_children():
            self.add_module(name, child)
        self._original = [original]
        self._projections, self._site_fn, self._fns, self.strength = projections, site_fn, list(fns), float(strength)

    def forward(self, x, *args, **kwargs):
        original = self._original[0]
        site = self._site_fn(kwargs.get("transformer_options"))

        def projection(proj, module):
            def run(u):
                y = module(u)
                for fn in self._fns:
                    d = fn(proj, u, site)
                    if d is not None:
                        y = y + self.strength * d.to(y)
                return y
            return run

        proxy = _Proxy(original, {attr: projection(proj, getattr(original, attr))
                                  for proj, attr in self._projections.items()})
        return type(original).forward(proxy, x, *args, **kwargs)


UNET_CROSS_ATTENTION = {"q": "to_q", "k": "to_k", "v": "to_v", "out": "to_out"}


# ----------------------------------------------------------------------------------------------------
# the table: architecture -> installer


def _install_unet(m, host: HostModel, plan: list[Attachment], strength: float, frames: int):
    for a in plan:
        if a.point == "block_parallel":
            raise VideoAdapterError("a parallel block branch is a DiT hook point; UNets have no such point")
    router = _UNetRouter(host, plan, strength, frames)
    points = {a.point for a in plan}
    if "self_attn_kv" in points:
        m.set_model_attn1_patch(router.attn1)
    if "self_attn_out" in points:
        m.set_model_attn1_output_patch(router.attn1_output)
    if points & {"temporal", "capture"}:
        m.set_model_patch(router.middle, "middle_patch")
    if "cross_context" in points:
        m.set_model_attn2_patch(router.attn2)
    _install_scopes(m, host, plan, frames)
    by_name = {b.name: b for b in host.blocks}
    per_block: dict[tuple[str, str], list] = {}
    for a in plan:
        if a.point in ("ffn_parallel", "cross_attn_delta"):
            names = [a.block] if a.block is not None else [b.name for b in host.blocks_of("spatial")]
            for name in names:
                per_block.setdefault((name, a.point), []).append(a.fn)
    for (name, point), fns in per_block.items():
        blk = by_name[name]
        site_fn = (lambda to, blk=blk: _unet_ffn_site(blk, to))
        if point == "ffn_parallel":
            key = f"diffusion_model.{name}.ff"
            m.add_object_patch(key, _Wrapped(m.get_model_object(key), site_fn, "ffn_parallel", fns, strength))
        else:
            key = f"diffusion_model.{name}.attn2"
            if blk.context_dim is None:
                raise VideoAdapterError(f"block {name} has no cross-attention")
            m.add_object_patch(key, _DeltaAttention(m.get_model_object(key), UNET_CROSS_ATTENTION, site_fn, fns,
                                                    strength))


def _install_scopes(m, host: HostModel, plan: list[Attachment], frames: int):
    forward = _ForwardScopes(host, [a.fn for a in plan if a.point == "conditions"], frames)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, ADDITIONAL_MODELS_KEY, forward)
    for when in (comfy.patcher_extension.CallbacksMP.ON_PRE_RUN, comfy.patcher_extension.CallbacksMP.ON_CLEANUP):
        m.add_callback_with_key(when, ADDITIONAL_MODELS_KEY, forward.clear_run)


def _unet_ffn_site(blk: Block, to) -> Site:
    return Site(blk, 0, (0, 0, 0), list((to or {}).get("cond_or_uncond") or [0]), (to or {}).get("sigmas"), to or {})


def _install_wan(m, host: HostModel, plan: list[Attachment], strength: float, frames: int):
    if any(a.point == "self_attn_kv" for a in plan):
        raise VideoAdapterError("Wan's self-attention already spans all frames; key/value patches (latent shift) "
                                "are for frame-wise models")
    _install_scopes(m, host, plan, frames)
    by_name = {b.name: b for b in host.blocks}
    objects = {"self_attn_out": "self_attn", "ffn_parallel": "ffn", "cross_context": "cross_attn"}
    per_block: dict[str, dict[str, list]] = {}
    for a in plan:
        if a.point == "conditions":
            continue
        names = [a.block] if a.block is not None else list(by_name)
        for name in names:
            per_block.setdefault(name, {}).setdefault(a.point, []).append(a.fn)
    replace = m.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
    for name, points in per_block.items():
        blk = by_name[name]
        for point, attr in objects.items():
            if points.get(point):
                key = f"diffusion_model.{name}.{attr}"
                m.add_object_patch(key, _Wrapped(m.get_model_object(key), lambda to, blk=blk: _wan_site(blk, to),
                                                 point, points[point], strength))
        found = {p: points[p] for p in ("temporal", "block_parallel", "capture") if points.get(p)}
        if found:
            m.set_model_patch_replace(_WanBlockPatch(blk, found, strength, replace.get(("double_block", blk.key))),
                                      "dit", "double_block", blk.key)


# ----------------------------------------------------------------------------------------------------
# gradient checkpointing for training: every block of the frozen base, the kind's modules inside it, keeps
# only its input for backward and runs again there


def _checkpoint(fn, to: dict | None, *args, **kwargs):
    """``fn(*args, **kwargs)`` under ``torch.utils.checkpoint`` when gradients are on (a plain call otherwise).
    Backward runs the block again after the whole forward, when ComfyUI's ``transformer_options`` say where the
    forward ended (block, block index, shapes) and the wrapper that opened the scopes has returned: the options
    as this block saw them are put back for that second run, so every patch and adapter sees the same state."""
    if not torch.is_grad_enabled():
        return fn(*args, **kwargs)
    from torch.utils.checkpoint import checkpoint

    seen = dict(to) if to is not None else None

    def again(*a, **kw):
        if to is None:
            return fn(*a, **kw)
        now = dict(to)
        to.clear()
        to.update(seen)
        try:
            return fn(*a, **kw)
        finally:
            to.clear()
            to.update(now)

    return checkpoint(again, *args, use_reentrant=False, **kwargs)


class _CheckpointedWanBlock(_Shared):
    """``dit``/``double_block`` replace patch: the block (or the patch before it) under checkpointing."""

    def __init__(self, previous=None):
        self.previous = previous

    def __call__(self, args, extra):
        run = self.previous or (lambda a, e: e["original_block"](a))
        return _checkpoint(run, args.get("transformer_options"), args, extra)


def _checkpointed_module(module: nn.Module) -> nn.Module:
    """A shallow copy of a UNet transformer block or ResBlock (the same children, parameters and class, so
    isinstance checks and the object patches on its children still hold) whose forward runs under checkpointing."""
    import copy

    clone = copy.copy(module)
    forward = type(module).forward

    def checkpointed(*args, **kwargs):
        to = kwargs.get("transformer_options")
        if to is None:
            to = next((a for a in reversed(args) if isinstance(a, dict)), None)
        return _checkpoint(lambda *a, **kw: forward(clone, *a, **kw), to, *args, **kwargs)

    clone.forward = checkpointed
    return clone


def with_gradient_checkpointing(model, host: HostModel | None = None):
    """A clone of ``model`` (a MODEL with or without adapters) whose every block (UNet spatial and temporal
    transformer blocks and ResBlocks, Wan DiT blocks) runs under gradient checkpointing while gradients are on:
    activation memory of one block instead of all, for one extra forward per block in backward. Sampling is
    unchanged."""
    host = host if host is not None else describe(model)
    supported(host)
    m = static_clone(model)
    if host.architecture == "wan":
        replace = m.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
        for blk in host.blocks:
            m.set_model_patch_replace(_CheckpointedWanBlock(replace.get(("double_block", blk.key))), "dit",
                                      "double_block", blk.key)
    else:
        # the transformer blocks (where the adapters live) and every ResBlock beside them: between them they hold
        # most of a UNet's activations (docs/memory.md measures what stays outside)
        for name in [b.name for b in host.blocks] + _unet_resblocks(m):
            key = f"diffusion_model.{name}"
            m.add_object_patch(key, _checkpointed_module(m.get_model_object(key)))
    return m


_LEVEL_CHILD = re.compile(r"^(input_blocks\.\d+|middle_block|output_blocks\.\d+)\.\d+$")


def _unet_resblocks(model) -> list[str]:
    """Names of the UNet's top-level ResBlocks (SVD's VideoResBlocks included, their inner time stack not)."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

    dm = model.get_model_object("diffusion_model")
    return [n for n, mod in dm.named_modules() if isinstance(mod, ResBlock) and _LEVEL_CHILD.match(n)]


HOOK_POINTS: dict[str, tuple[frozenset, Callable]] = {
    "unet": (frozenset(POINTS) - {"block_parallel"}, _install_unet),
    "wan": (frozenset(POINTS) - {"self_attn_kv", "cross_attn_delta"}, _install_wan),
}


def adapter_patcher(adapters: nn.Module, model):
    """The adapters' own ModelPatcher, loaded and offloaded with ``model``."""
    return comfy.model_patcher.ModelPatcher(adapters, load_device=model.load_device,
                                            offload_device=model.offload_device)


def supported(host: HostModel, label: str = "model") -> None:
    if host.architecture not in HOOK_POINTS:
        raise VideoAdapterError(
            f"{label} ({host.model_config}) has neither UNet spatial transformers (SD 1.5, SDXL, SVD) nor Wan DiT "
            "blocks; adapters attach to those families")


def attach(model, adapters: nn.Module | None, plan: list[Attachment], strength: float = 1.0, frames: int = 0,
           label: str = "model", host: HostModel | None = None):
    """A clone of ``model`` with ``plan`` installed and ``adapters`` (the modules behind it) registered as an
    additional model."""
    host = host if host is not None else describe(model, label)
    supported(host, label)
    points, install = HOOK_POINTS[host.architecture]
    names = {b.name for b in host.blocks}
    for a in plan:
        if a.point not in POINTS:
            raise ValueError(f"unknown hook point '{a.point}'; hook points: {', '.join(POINTS)}")
        if a.point not in points:
            raise VideoAdapterError(f"{label} ({host.model_config}) has no '{a.point}' hook point")
        if a.block is not None and a.block not in names:
            raise VideoAdapterError(f"{label} has no block '{a.block}'")
    # core demotes a dynamic-VRAM patcher to a static one when weight hooks are present; the pack's object patches
    # and additional models take the same static path (core's own clone(disable_dynamic=True)) rather than
    # relying on streaming of replaced modules that dynamic VRAM was not written for
    m = static_clone(model, label)
    if adapters is not None:  # None: the plan holds no weights of its own
        m.set_additional_models(ADDITIONAL_MODELS_KEY, m.get_additional_models_with_key(ADDITIONAL_MODELS_KEY)
                                + [adapter_patcher(adapters, model)])
    install(m, host, plan, float(strength), int(frames))
    return m


# ----------------------------------------------------------------------------------------------------
# adapter sets of any kind: build, check, attach


def _kind(kind):
    from ...adapters import registry

    return registry.get(kind) if isinstance(kind, str) else kind


def _checked_host(model, kind, label: str, host: HostModel | None) -> HostModel:
    host = host if host is not None else describe(model, label)
    supported(host, label)
    try:
        kind.check_host(host)
    except ValueError as e:
        raise VideoAdapterError(f"{label}: {e}") from None
    return host


def adapter_blocks(model, kind, label: str = "model", host: HostModel | None = None) -> dict[str, int]:
    """``{block name: width}`` of the blocks adapters of ``kind`` (a name or an ``AdapterKind``) get on ``model``."""
    kind = _kind(kind)
    host = _checked_host(model, kind, label, host)
    return {b.name: b.dim for b in host.blocks_of(*kind.block_kinds)}


def new_adapters(kind, model, config: dict[str, Any], label: str = "model", host: HostModel | None = None):
    """Fresh (identity at init) adapters of ``kind`` for ``model``."""
    kind = _kind(kind)
    host = _checked_host(model, kind, label, host)
    return kind.build(adapter_blocks(model, kind, label, host), config, host.family)


def check_adapters_fit(adapters, model, label: str = "model", file_label: str = "the adapters",
                       host: HostModel | None = None) -> None:
    """Refuse adapters made for another family or another model size, naming both."""
    meta = adapters.metadata()
    host = host if host is not None else describe(model, label)
    fam = host.family
    if meta["family"] != fam:
        raise VideoAdapterError(
            f"{file_label} were trained for '{meta['family']}' models, but {label} is '{fam}' ({host.model_config}); "
            f"use adapters trained on a '{fam}' model, or connect a '{meta['family']}' model")
    blocks = {b.name: b.dim for b in host.blocks}
    wrong = [(n, info["dim"], blocks.get(n)) for n, info in meta["blocks"].items()
             if n not in blocks or blocks[n] != info["dim"]]
    if wrong:
        name, want, got = wrong[0]
        have = "has no such block" if got is None else f"has width {got}"
        raise VideoAdapterError(
            f"{file_label} do not fit {label}: {len(wrong)} of {len(meta['blocks'])} adapter blocks do not match "
            f"(for example {name}: width {want} in the file, the model {have}). They were trained on a "
            f"different '{fam}' architecture or size")


def attach_adapters(model, adapters, strength: float = 1.0, frames: int = 0, options: dict | None = None,
                    label: str = "model", file_label: str = "the adapters", host: HostModel | None = None,
                    kind=None):
    """A clone of ``model`` with an adapter set of any kind attached where its kind declares."""
    kind = _kind(kind if kind is not None else adapters.metadata()["kind"])
    host = _checked_host(model, kind, label, host)
    check_adapters_fit(adapters, model, label, file_label, host)
    plan = [Attachment(b, p, fn) for b, p, fn in kind.attachments(adapters, host.architecture, options or {})]
    return attach(model, adapters, plan, strength, frames, label, host)
