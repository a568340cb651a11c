"""The Score Composer's pieces: the priors' conditionings and strength terms, and the composition settings
built from the node's inputs."""

from __future__ import annotations


from ...samplers.composition import Composition, CompositionSettingsError, PriorTerm, check_settings
from ...samplers.guiders import PriorModel
from ...samplers.schedules import CONSTANT_ONE, SigmaPercentMap, sigma_window
from ..common import VideoAdapterError, check_compatible, check_conditioning
from .host import describe


def _build_priors_and_terms(domain_model, positive, negative, entries):
    """Checks every model and conditioning, then entries: [(model, positive, negative, strength, schedule, cfg,
    label)] -> (PriorModel list, PriorTerm list)."""
    check_conditioning(domain_model, positive, "positive", "domain_model")
    check_conditioning(domain_model, negative, "negative", "domain_model")
    priors, terms = [], []
    for model, positive, negative, strength, schedule, cfg, label in entries:
        check_compatible(domain_model, model, "domain_model", label)
        check_conditioning(model, positive, f"{label}'s prompt", label)
        check_conditioning(model, negative, f"{label}'s negative prompt", label)
        priors.append(PriorModel(model=model, positive=positive, negative=negative, cfg=cfg, label=label))
        terms.append(PriorTerm(strength=float(strength), schedule=schedule or CONSTANT_ONE))
    return priors, terms


def _composition(domain_model, terms, cfg, composition_end, rule="product", mcmc_steps=0, mcmc_step_size=0.05,
                 flow_space="velocity"):
    ms = domain_model.get_model_object("model_sampling")
    comp = Composition(
        cfg=float(cfg), priors=terms,
        window_sigma=sigma_window(ms.percent_to_sigma, float(composition_end)),
        sigma_to_percent=SigmaPercentMap(ms.percent_to_sigma).percent,
        parameterisation=describe(domain_model, "domain_model").require_space(), flow_space=flow_space,
        mcmc_steps=int(mcmc_steps), mcmc_step_size=float(mcmc_step_size), rule=rule)
    try:
        check_settings(comp)  # refused before sampling, in the user's words (limits: composer_stability_sweep.py)
    except CompositionSettingsError as e:
        raise VideoAdapterError(f"Score Composer: {e}") from None
    return comp
