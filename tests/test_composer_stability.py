"""The composer's settings on the shipped tiny pair: every combination of the allowed ranges (edges included)
is refused before sampling with a message that names the settings and what works, or samples to the end
finite and bounded (benchmarks/composer_stability_sweep.py runs the larger grid)."""

import pytest

from samplers.composition import (MAX_LANGEVIN_STEP, MAX_PRIOR_WEIGHT, Composition, CompositionSettingsError,
                                  PriorTerm, check_settings, prior_weight)
from samplers.schedules import StrengthSchedule



def sweep_module():
    from devtools import stability

    return stability


def test_every_setting_is_refused_or_finite_and_bounded():
    mod = sweep_module()
    res = mod.sweep(mod.SMALL_GRID)
    assert not res["failures"], res["failures"][:5]
    assert res["ok"] > res["total"] // 3  # most settings sample; the refusals are the exception
    assert res["refused"] > 0


def test_without_the_refusals_the_sweep_fails():
    """Guards the test above: the refused settings really diverge when sampled."""
    mod = sweep_module()
    grid = dict(strength=(10.0,), cfg=(100.0,), schedule=("piecewise peak 10",), composition_end=(1.0,),
                mcmc=((0, 0.05),), flow_space=("velocity", "noise"))
    assert mod.sweep(grid)["refused"] == 2
    assert len(mod.sweep(grid, check=False)["failures"]) == 2


def _comp(cfg=3.0, strength=0.2, schedule=None, flow_space="velocity", mcmc=(0, 0.05), window_sigma=0.0):
    term = PriorTerm(strength, schedule) if schedule is not None else PriorTerm(strength)
    return Composition(cfg=cfg, priors=[term], window_sigma=window_sigma, sigma_to_percent=lambda s: 1.0 - s,
                       parameterisation="flow", flow_space=flow_space, mcmc_steps=mcmc[0], mcmc_step_size=mcmc[1])


def test_prior_weight_reads_the_schedule_inside_the_window():
    assert prior_weight(_comp(cfg=3.0, strength=0.2)) == pytest.approx(0.6)
    peak = StrengthSchedule("piecewise", points=((0.0, 1.0), (0.7, 10.0)))
    assert prior_weight(_comp(cfg=2.0, strength=0.5, schedule=peak)) == pytest.approx(10.0)
    # the peak at 70 % lies outside a window that ends at 50 % (sigma 0.5 with this percent map)
    assert prior_weight(_comp(cfg=2.0, strength=0.5, schedule=peak, window_sigma=0.5)) == pytest.approx(1.0)
    # composition_end 0: nothing is composed
    assert prior_weight(_comp(window_sigma=1.0)) == 0.0


def test_refusal_messages_name_the_settings_and_what_works():
    w = MAX_PRIOR_WEIGHT["noise"] * 2
    with pytest.raises(CompositionSettingsError, match=r"diverge.*cfg \(now 10\).*or flow_space \"velocity\""):
        check_settings(_comp(cfg=10.0, strength=w / 10.0, flow_space="noise"))
    with pytest.raises(CompositionSettingsError, match=r"prior_strength \(now 10\).*schedule peak <= 10 at this cfg"):
        check_settings(_comp(cfg=100.0, strength=10.0, schedule=StrengthSchedule("constant", 1.1)))
    with pytest.raises(CompositionSettingsError, match=r"mcmc_step_size \(now 1\).*use mcmc_step_size <= 0\.5 .*"
                                                       r"or flow_space \"velocity\""):
        check_settings(_comp(cfg=3.0, strength=1.0, mcmc=(5, 1.0), flow_space="noise"))
    # what the pack's workflows and the paper use is allowed, and so is the largest noise-space weight
    check_settings(_comp(cfg=3.0, strength=0.2, mcmc=(5, 0.05), flow_space="noise"))
    check_settings(_comp(cfg=6.0, strength=1.0, mcmc=(1, 0.05), flow_space="noise"))
    check_settings(_comp(cfg=100.0, strength=10.0, mcmc=(20, 1.0)))  # velocity: w = 1000 samples bounded
    assert MAX_LANGEVIN_STEP["noise"] < MAX_LANGEVIN_STEP["velocity"]
