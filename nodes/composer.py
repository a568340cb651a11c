"""Score composition nodes (Video Adapter): the composer guider, extra priors, strength schedules and
the CFG-mix baseline. Thin: validate inputs, build the core objects, return native types."""

from __future__ import annotations

from comfy_api.latest import io

from ..samplers.composition import FLOW_SPACES
from ..samplers.guiders import ComposedGuider
from ..samplers.schedules import SCHEDULE_KINDS, StrengthSchedule, parse_points
from .common import CAT_COMPOSE, Priors, PriorSchedule, VideoAdapterError
from .binding.composer import _build_priors_and_terms, _composition

_T_END = ("Sampling percent (0 = first step, 1 = last) after which the prior is no longer composed; "
          "the last steps then use the domain model alone. Converted to a noise level with the domain "
          "model's schedule, so every sampler and scheduler agrees. 0.9 follows the paper (no composition "
          "in the last 100 of 1000 steps); 1.0 composes to the end.")


class ScoreComposer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_ScoreComposer",
            display_name="Score Composer (Video Adapter)",
            category=CAT_COMPOSE,
            description=(
                "Samples from the product of a small domain model and a frozen large prior: each step adds "
                "the prior's score, scaled by prior_strength, to the domain model's conditional score before "
                "classifier-free guidance (Video Adapter, Algorithm 1). Connect the GUIDER to "
                "SamplerCustomAdvanced; any sampler and scheduler work. Both models must share the latent "
                "space and noise parameterisation."),
            inputs=[
                io.Model.Input("domain_model", tooltip="The small model that knows your style or domain. Its "
                               "schedule defines the sampling percents."),
                io.Model.Input("prior_model", tooltip="The frozen large model (for example Wan 2.1 14B); only its "
                               "conditional prediction is used."),
                io.Conditioning.Input("positive", tooltip="Prompt for the domain model (and for the prior unless "
                                      "prior_positive is connected)."),
                io.Conditioning.Input("negative", tooltip="Negative / empty prompt for the domain model's "
                                      "unconditional prediction."),
                io.Float.Input("prior_strength", default=0.2, min=0.0, max=10.0, step=0.01, round=0.001,
                               tooltip="gamma: weight of the prior's score. 0 disables the prior (plain CFG on the "
                                       "domain model). The paper used 0.1 to 0.4."),
                io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="omega: classifier-free guidance scale applied to the composed conditional "
                                       "score (inverse temperature)."),
                io.Float.Input("composition_end", default=0.9, min=0.0, max=1.0, step=0.01, tooltip=_T_END),
                io.Conditioning.Input("prior_positive", optional=True,
                                      tooltip="Prompt for the prior when it uses another text encoder or wording. "
                                              "Defaults to positive."),
                PriorSchedule.Input("prior_schedule", optional=True,
                                    tooltip="Makes prior_strength depend on the sampling percent (a multiplier from "
                                            "Prior Strength Schedule). Default: constant."),
                io.Int.Input("mcmc_steps", default=0, min=0, max=20, optional=True,
                             tooltip="Langevin correction steps at each noise level on the composed score. Each "
                                     "step costs one more evaluation of both models. 0 = off."),
                io.Float.Input("mcmc_step_size", default=0.05, min=0.0, max=1.0, step=0.005, round=0.0001, optional=True,
                               tooltip="Langevin step as a fraction of sigma^2 (only used when mcmc_steps > 0)."),
                Priors.Input("extra_priors", optional=True,
                             tooltip="More priors from Add Prior nodes; the product then has one factor per prior."),
                io.Combo.Input("flow_space", options=list(FLOW_SPACES), default="velocity", optional=True,
                               tooltip="Rectified-flow models only (Wan): compose velocities (default, finite "
                                       "everywhere, closest to the product distribution in our measurements) or "
                                       "noise predictions (exact score sum, clamped near sigma = 1)."),
            ],
            outputs=[io.Guider.Output(tooltip="Guider for SamplerCustomAdvanced.")],
        )

    @classmethod
    def execute(cls, domain_model, prior_model, positive, negative, prior_strength, cfg, composition_end,
                prior_positive=None, prior_schedule=None, mcmc_steps=0, mcmc_step_size=0.05, extra_priors=None,
                flow_space="velocity") -> io.NodeOutput:
        entries = [(prior_model, prior_positive if prior_positive is not None else positive, None,
                    prior_strength, prior_schedule, 1.0, "prior_model")]
        for i, e in enumerate(extra_priors or []):
            entries.append((e["model"], e["positive"], None, e["strength"], e["schedule"], 1.0, f"extra prior {i + 1}"))
        priors, terms = _build_priors_and_terms(domain_model, positive, negative, entries)
        comp = _composition(domain_model, terms, cfg, composition_end, "product", mcmc_steps, mcmc_step_size, flow_space)
        guider = ComposedGuider(domain_model, priors, comp)
        guider.set_conds(positive, negative)
        return io.NodeOutput(guider)


class AddPrior(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_AddPrior",
            display_name="Add Prior",
            category=CAT_COMPOSE,
            description=("Appends one more frozen prior (model, prompt, strength) to a list for the Score "
                         "Composer's extra_priors input; chain several to compose a product of many models."),
            inputs=[
                io.Model.Input("prior_model", tooltip="Another frozen model in the same latent space."),
                io.Conditioning.Input("prior_positive", tooltip="Prompt for this prior."),
                io.Float.Input("prior_strength", default=0.2, min=0.0, max=10.0, step=0.01, round=0.001,
                               tooltip="gamma for this prior."),
                PriorSchedule.Input("prior_schedule", optional=True,
                                    tooltip="Optional strength schedule for this prior."),
                Priors.Input("priors", optional=True, tooltip="List to append to (from another Add Prior)."),
            ],
            outputs=[Priors.Output(display_name="priors", tooltip="The list with this prior appended.")],
        )

    @classmethod
    def execute(cls, prior_model, prior_positive, prior_strength, prior_schedule=None, priors=None) -> io.NodeOutput:
        out = list(priors or [])
        out.append({"model": prior_model, "positive": prior_positive, "strength": float(prior_strength),
                    "schedule": prior_schedule})
        return io.NodeOutput(out)


class PriorStrengthScheduleNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_PriorStrengthSchedule",
            display_name="Prior Strength Schedule",
            category=CAT_COMPOSE,
            description=("A multiplier of prior_strength over the sampling percent (0 = first step, 1 = last). "
                         "The paper found a time-dependent prior strength useful."),
            inputs=[
                io.Combo.Input("kind", options=list(SCHEDULE_KINDS), default="linear",
                               tooltip="constant: start_value everywhere. linear / cosine: ramp from start_value at "
                                       "start_percent to end_value at end_percent. piecewise: the 'points' list."),
                io.Float.Input("start_value", default=1.0, min=0.0, max=10.0, step=0.01,
                               tooltip="Multiplier at and before start_percent."),
                io.Float.Input("end_value", default=0.0, min=0.0, max=10.0, step=0.01,
                               tooltip="Multiplier at and after end_percent."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Where the ramp starts."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Where the ramp ends."),
                io.String.Input("points", default="0.0:1.0, 0.5:0.5", multiline=True,
                                tooltip="piecewise only: 'percent:multiplier' pairs; each holds until the next."),
            ],
            outputs=[PriorSchedule.Output(display_name="prior_schedule",
                                          tooltip="Connect to prior_schedule of the Score Composer or Add Prior.")],
        )

    @classmethod
    def execute(cls, kind, start_value, end_value, start_percent, end_percent, points) -> io.NodeOutput:
        try:
            sched = StrengthSchedule(kind=kind, start_value=float(start_value), end_value=float(end_value),
                                     start_percent=float(start_percent), end_percent=float(end_percent),
                                     points=parse_points(points) if kind == "piecewise" else ())
        except ValueError as e:
            raise VideoAdapterError(f"Prior Strength Schedule: {e}") from None
        return io.NodeOutput(sched)


class CFGMixGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_CFGMixGuider",
            display_name="CFG Mix Guider (baseline)",
            category=CAT_COMPOSE,
            description=("The paper's 'CFG mix' baseline: interpolates the two models' classifier-free guided "
                         "predictions, (1 - prior_weight) * domain + prior_weight * prior. For A/B comparisons with "
                         "the Score Composer on the same seed."),
            inputs=[
                io.Model.Input("domain_model", tooltip="The small domain model."),
                io.Model.Input("prior_model", tooltip="The frozen large model."),
                io.Conditioning.Input("positive", tooltip="Prompt for the domain model (and the prior by default)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt for the domain model (and the prior by "
                                      "default)."),
                io.Float.Input("prior_weight", default=0.2, min=0.0, max=1.0, step=0.01,
                               tooltip="Interpolation weight of the prior's guided prediction."),
                io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="CFG scale of the domain model."),
                io.Float.Input("prior_cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="CFG scale of the prior."),
                io.Float.Input("composition_end", default=0.9, min=0.0, max=1.0, step=0.01, tooltip=_T_END),
                io.Conditioning.Input("prior_positive", optional=True, tooltip="Prompt for the prior; defaults to positive."),
                io.Conditioning.Input("prior_negative", optional=True,
                                      tooltip="Negative prompt for the prior; defaults to negative."),
            ],
            outputs=[io.Guider.Output(tooltip="Guider for SamplerCustomAdvanced.")],
        )

    @classmethod
    def execute(cls, domain_model, prior_model, positive, negative, prior_weight, cfg, prior_cfg, composition_end,
                prior_positive=None, prior_negative=None) -> io.NodeOutput:
        entries = [(prior_model, prior_positive if prior_positive is not None else positive,
                    prior_negative if prior_negative is not None else negative,
                    prior_weight, None, float(prior_cfg), "prior_model")]
        priors, terms = _build_priors_and_terms(domain_model, positive, negative, entries)
        comp = _composition(domain_model, terms, cfg, composition_end, rule="cfg_mix")
        guider = ComposedGuider(domain_model, priors, comp)
        guider.set_conds(positive, negative)
        return io.NodeOutput(guider)


NODES = [ScoreComposer, AddPrior, PriorStrengthScheduleNode, CFGMixGuider]
