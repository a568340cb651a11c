"""The composer's guider overrides ComfyUI's ``CFGGuider.outer_sample`` / ``inner_sample``. Hosts add keyword
arguments to those calls over time (``latent_shapes`` in 2026); an override that does not pass them on breaks
every run on the newer host. This test needs no ComfyUI: it puts a stand-in ``comfy`` package, whose
``CFGGuider`` and ``process_conds`` take a keyword this pack has never heard of, in front of the guider module,
and checks that the keyword reaches the base class and each prior's ``process_conds``, and that a prior never
receives the domain model's multi-GPU clones."""

from __future__ import annotations

import importlib
import sys
import types

import pytest
import torch


class _Patcher:
    def __init__(self, name):
        self.name = name
        self.model = types.SimpleNamespace(process_latent_in=lambda x: x, name=name)
        self.model_options = {"transformer_options": {}, "multigpu_clones": {"cuda:1": f"{name} clone"}}
        self.hook_mode = "max_speed"
        self.events = []

    def clone(self):
        return self

    def set_additional_models(self, key, models):
        self.additional = (key, models)

    def model_dtype(self):
        return torch.float32

    def pre_run(self):
        self.events.append("pre_run")

    def cleanup(self):
        self.events.append("cleanup")

    def restore_hook_patches(self):
        self.events.append("restore_hook_patches")


def _fake_comfy(log):
    comfy = types.ModuleType("comfy")
    samplers = types.ModuleType("comfy.samplers")

    class CFGGuider:
        def __init__(self, model_patcher):
            self.model_patcher = model_patcher
            self.model_options = model_patcher.model_options
            self.original_conds = {}

        def set_conds(self, positive, negative):
            self.original_conds = {"positive": positive, "negative": negative}

        def outer_sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                         disable_pbar=False, seed=None, brand_new_keyword=None):
            log["outer"] = brand_new_keyword
            self.inner_model = self.model_patcher.model
            self.conds = {}
            return self.inner_sample(noise, latent_image, "cpu", sampler, sigmas, denoise_mask, callback,
                                     disable_pbar, seed, brand_new_keyword=brand_new_keyword)

        def inner_sample(self, noise, latent_image, device, sampler, sigmas, denoise_mask, callback, disable_pbar,
                         seed, brand_new_keyword=None):
            log["inner"] = brand_new_keyword
            log["inner_seed"] = seed
            return noise

    def process_conds(model, noise, conds, device, latent_image=None, denoise_mask=None, seed=None,
                      brand_new_keyword=None):
        log.setdefault("process", []).append((model.name, brand_new_keyword, seed))
        return conds

    samplers.CFGGuider = CFGGuider
    samplers.process_conds = process_conds
    samplers.preprocess_conds_hooks = lambda conds: None
    samplers.filter_registered_hooks_on_conds = lambda conds, opts: None
    samplers.get_total_hook_groups_in_conds = lambda conds: 0
    samplers.cast_to_load_options = lambda opts, device=None, dtype=None: None

    helpers = types.ModuleType("comfy.sampler_helpers")
    helpers.convert_cond = lambda c: [{"cross_attn": x[0], **x[1]} for x in c]

    def prepare_sampling(model, noise_shape, conds, model_options=None):
        log.setdefault("prior_options", []).append(dict(model_options))
        return model.model, conds, ["cond model"]

    helpers.prepare_sampling = prepare_sampling
    helpers.get_additional_models = lambda conds, dtype: (["cond model"], 0)  # the prior's conds carry a model
    helpers.prepare_model_patcher = lambda model, conds, opts: None
    helpers.cleanup_models = lambda conds, models: log.setdefault("cleaned", []).append(models)

    patcher = types.ModuleType("comfy.model_patcher")
    patcher.create_model_options_clone = lambda o: {k: (dict(v) if isinstance(v, dict) else v) for k, v in o.items()}
    hooks = types.ModuleType("comfy.hooks")
    hooks.EnumHookMode = types.SimpleNamespace(MinVram="min_vram")
    mm = types.ModuleType("comfy.model_management")
    mm.throw_exception_if_processing_interrupted = lambda: None
    mods = {"comfy": comfy, "comfy.samplers": samplers, "comfy.sampler_helpers": helpers,
            "comfy.model_patcher": patcher, "comfy.hooks": hooks, "comfy.model_management": mm}
    for name, m in mods.items():
        if "." in name:
            setattr(comfy, name.split(".", 1)[1], m)
    return mods


@pytest.fixture
def guiders(monkeypatch):
    log = {}
    for name, module in _fake_comfy(log).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "samplers.guiders", raising=False)
    module = importlib.import_module("samplers.guiders")
    yield module, log
    sys.modules.pop("samplers.guiders", None)


def test_overrides_pass_on_keywords_they_do_not_know(guiders):
    module, log = guiders
    from samplers.composition import Composition, PriorTerm

    domain, prior = _Patcher("domain"), _Patcher("prior")
    comp = Composition(cfg=2.0, priors=[PriorTerm(strength=0.5)], window_sigma=0.0,
                       sigma_to_percent=lambda s: 0.0)
    g = module.ComposedGuider(domain, [module.PriorModel(model=prior, positive=[[torch.zeros(1), {}]])], comp)
    noise = torch.ones(1, 2)
    out = g.outer_sample(noise, torch.zeros(1, 2), "sampler", torch.tensor([1.0, 0.0]), None, None, True, 7,
                         brand_new_keyword="kept")
    assert out is noise
    assert log["outer"] == "kept" and log["inner"] == "kept" and log["inner_seed"] == 7
    assert log["process"] == [("prior", "kept", 7)]
    # the prior ran with its own options, without any model's multi-GPU clones, and was released afterwards
    assert all("multigpu_clones" not in o for o in log["prior_options"])
    assert prior.events == ["pre_run", "cleanup", "restore_hook_patches"]
    assert prior.hook_mode == "max_speed" and log["cleaned"] == [["cond model"]]
