import os

import pytest
import torch

from adapters.domain_model import DomainVideoModel, family_config, prediction_to_denoised
from adapters.files import AdapterFileError, read_metadata
from adapters.synthetic_video import ToyLatentCodec, make_clips
from adapters.plots import loss_curve_image
from adapters.training import (
    TrainConfig, Trainer, add_noise, diffusion_loss, discrete_sigmas, load_checkpoint, load_checkpoint_params,
    optimizer_from_tensors, optimizer_to_tensors, sample_sigmas, training_target)

TEXT_DIM = 32


@pytest.fixture(scope="module")
def data():
    clips = make_clips(12, "domain", seed=0, frames=4, size=32)
    latents = ToyLatentCodec(16).encode(clips.video)  # [12, 16, 4, 8, 8]
    return latents, clips.context(TEXT_DIM)


def _model(seed=0):
    torch.manual_seed(seed)
    return DomainVideoModel(family_config("wan21", text_dim=TEXT_DIM, width=64, heads=2, depth=2,
                                          first_frame_cond=True))


def _batch_fn(latents, context):
    def batch_fn(step, generator, batch_size):
        idx = torch.randint(0, latents.shape[0], (batch_size,), generator=generator)
        return {"x0": latents[idx], "context": context[idx], "first_frame": latents[idx][:, :, 0]}
    return batch_fn


def _params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("parameterisation", ["flow", "eps", "v"])
def test_targets_are_consistent_with_denoising(parameterisation):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 2, 4, 4, generator=g)
    noise = torch.randn(3, 4, 2, 4, 4, generator=g)
    sigma = torch.tensor([0.1, 0.5, 0.9]) if parameterisation == "flow" else torch.tensor([0.05, 1.0, 14.0])
    x_t = add_noise(x0, noise, sigma, parameterisation)
    target = training_target(x0, noise, sigma, parameterisation)
    # the target is exactly the prediction whose implied clean sample is x0
    assert torch.allclose(prediction_to_denoised(x_t, target, sigma, parameterisation), x0, atol=1e-5)

    def oracle(x, s, context):
        return target
    assert diffusion_loss(oracle, x0, None, sigma, noise, parameterisation).item() == pytest.approx(0.0, abs=1e-12)


def test_sigma_sampling():
    g = torch.Generator().manual_seed(0)
    flow = sample_sigmas(TrainConfig(sigma_sampling="flow_shift", flow_shift=3.0), 4000, g)
    assert 0 < float(flow.min()) and float(flow.max()) <= 1.0 and float(flow.median()) > 0.6  # shift -> noisier
    uni = sample_sigmas(TrainConfig(flow_distribution="uniform", flow_shift=1.0), 4000, g)
    assert abs(float(uni.mean()) - 0.5) < 0.03
    cfg = TrainConfig(sigma_sampling="eps_discrete")
    table = discrete_sigmas(cfg)
    assert table.shape == (1000,) and 0.02 < float(table[0]) < 0.04 and 14.0 < float(table[-1]) < 15.0
    eps = sample_sigmas(cfg, 500, g)
    assert torch.isin(eps, table.float()).all()


def test_lognormal_sigma_sampling_follows_edm_and_stays_in_the_table():
    """ln sigma ~ N(mean, std): the sample's log mean and spread match (4000 draws: standard errors 0.025 and
    0.018), and a table clamps the draws to its range."""
    g = torch.Generator().manual_seed(0)
    s = sample_sigmas(TrainConfig(sigma_sampling="lognormal", lognormal_mean=0.7, lognormal_std=1.6), 4000, g)
    assert abs(float(s.log().mean()) - 0.7) < 0.08 and abs(float(s.log().std()) - 1.6) < 0.06
    clamped = sample_sigmas(TrainConfig(sigma_sampling="lognormal", sigma_table=(0.5, 2.0)), 4000, g)
    assert float(clamped.min()) == 0.5 and float(clamped.max()) == 2.0
    with pytest.raises(ValueError, match="lognormal_std"):
        TrainConfig(sigma_sampling="lognormal", lognormal_std=0.0)
    cfg = TrainConfig(sigma_sampling="lognormal", lognormal_mean=-1.2)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_loss_decreases(data):
    latents, context = data
    model = _model()
    cfg = TrainConfig(steps=100, lr=2e-3, batch_size=4, seed=1, cond_dropout=0.1)
    seen = []
    res = Trainer(cfg).run(model, model, _batch_fn(latents, context), "flow", on_step=lambda s, l: seen.append((s, l)))
    assert res.steps_done == 100 and not res.stopped and len(res.losses) == 100
    assert [s for s, _ in seen] == list(range(1, 101)) and [l for _, l in seen] == res.losses
    first, last = sum(res.losses[:10]) / 10, sum(res.losses[-20:]) / 20
    assert last < 0.5 * first, (first, last)


def test_resume_equals_uninterrupted_run(data, tmp_path):
    latents, context = data
    cfg = TrainConfig(steps=20, lr=1e-3, batch_size=2, seed=5, cond_dropout=0.3, warmup_steps=4,
                      weight_decay=0.01, checkpoint_every=7)
    full_model = _model()
    full = Trainer(cfg).run(full_model, full_model, _batch_fn(latents, context), "flow")

    path = str(tmp_path / "ck.safetensors")
    first_model = _model()
    first = Trainer(cfg).run(first_model, first_model, _batch_fn(latents, context), "flow",
                             checkpoint_path=path, should_stop=lambda: len(calls) >= 10,
                             on_step=lambda s, l: calls.append(s))
    assert first.stopped and first.steps_done == 10 and first.checkpoint_step == 10

    resumed_model = _model(seed=123)  # different init: everything must come from the checkpoint
    resumed = Trainer(cfg).run(resumed_model, resumed_model, _batch_fn(latents, context), "flow",
                               checkpoint_path=path, resume_from=path)
    assert resumed.steps_done == 20 and not resumed.stopped
    assert resumed.losses == full.losses  # exact, not approximate
    a, b = _params(full_model), _params(resumed_model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_checkpoint(path).step == 20


def test_resume_from_a_checkpoint_that_also_trained_a_part_now_frozen(data, tmp_path):
    """An earlier version trained a part that is now kept but frozen (an ablation switch): its checkpoint resumes;
    the frozen part takes the checkpoint's values and drops its optimizer state, the rest resumes exactly."""
    latents, context = data
    cfg = TrainConfig(steps=12, lr=1e-3, batch_size=2, seed=5, weight_decay=0.01, checkpoint_every=6)
    path = str(tmp_path / "ck.safetensors")
    old = _model()
    calls.clear()
    Trainer(cfg).run(old, old, _batch_fn(latents, context), "flow", checkpoint_path=path,
                     should_stop=lambda: len(calls) >= 6, on_step=lambda s, l: calls.append(s))
    frozen_name = "final.weight"
    saved = load_checkpoint(path)
    assert frozen_name in saved.params and any(k.startswith(f"optim/{frozen_name}/") for k in saved.optimizer_tensors)

    def frozen_model(seed):
        m = _model(seed)
        m.get_parameter(frozen_name).requires_grad_(False)
        return m

    got = frozen_model(123)  # another init: the frozen part too must come from the checkpoint
    res = Trainer(cfg).run(got, got, _batch_fn(latents, context), "flow", resume_from=path)
    assert res.steps_done == 12 and res.losses[:6] == saved.losses
    assert torch.equal(got.get_parameter(frozen_name), saved.params[frozen_name])
    # a run that trains a parameter the checkpoint does not have is still refused
    other = _model(0)
    with pytest.raises(AdapterFileError, match="names differ"):
        Trainer(cfg).run({"extra": torch.zeros(3, requires_grad=True), **dict(other.named_parameters())}, other,
                         _batch_fn(latents, context), "flow", resume_from=path)


calls: list = []


@pytest.fixture(autouse=True)
def _reset_calls():
    calls.clear()


def test_should_stop_leaves_loadable_checkpoint(data, tmp_path):
    latents, context = data
    path = str(tmp_path / "sub" / "interrupted.safetensors")
    model = _model()
    res = Trainer(TrainConfig(steps=50, lr=1e-3, batch_size=2)).run(
        model, model, _batch_fn(latents, context), "flow", checkpoint_path=path,
        should_stop=lambda: len(calls) >= 5, on_step=lambda s, l: calls.append(s),
        checkpoint_meta={"family": "wan21", "config": model.config.to_dict()})
    assert res.stopped and res.steps_done == 5 and res.checkpoint_path == path
    assert not [f for f in os.listdir(tmp_path / "sub") if f.startswith(".tmp_")]
    meta = read_metadata(path)
    assert meta["kind"] == "checkpoint" and meta["step"] == 5 and meta["family"] == "wan21"
    ck = load_checkpoint(path)
    assert ck.losses == res.losses and len(ck.rng_state) > 0
    assert {k.split("/")[-1] for k in ck.optimizer_tensors} == {"exp_avg", "exp_avg_sq", "step"}
    fresh = _model(seed=9)
    load_checkpoint_params(fresh, path)
    a, b = _params(model), _params(fresh)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_works_under_inference_mode(data):
    latents, context = data
    cfg = TrainConfig(steps=6, lr=1e-3, batch_size=2, seed=2)
    ref_model = _model()
    ref = Trainer(cfg).run(ref_model, ref_model, _batch_fn(latents, context), "flow")
    with torch.inference_mode():
        # what a host node does: model and data created under inference mode, training called from there
        inf_latents, inf_context = latents.clone(), context.clone()
        model = _model()
        assert next(model.parameters()).is_inference()
        res = Trainer(cfg).run(model, model, _batch_fn(inf_latents, inf_context), "flow")
    assert res.losses == ref.losses
    a, b = _params(ref_model), _params(model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not next(model.parameters()).is_inference()


@pytest.mark.parametrize("parameterisation", ["eps", "v"])
def test_sd_style_parameterisations(parameterisation):
    torch.manual_seed(0)
    model = DomainVideoModel(family_config("sd15", parameterisation=parameterisation, text_dim=TEXT_DIM,
                                           width=64, heads=2, depth=1))
    latents = ToyLatentCodec(4).encode(make_clips(4, "domain", seed=1, frames=3, size=16).video)
    cfg = TrainConfig(steps=5, lr=1e-3, batch_size=2, sigma_sampling="eps_discrete", cond_dropout=0.0)
    res = Trainer(cfg).run(model, model, lambda step, g, bs: latents[:bs], parameterisation)
    assert len(res.losses) == 5 and all(torch.isfinite(torch.tensor(res.losses)))


def test_plain_parameter_mapping_and_mismatch(tmp_path, data):
    latents, _ = data
    w = torch.zeros(16, requires_grad=True)

    def model_fn(x, sigma, context):
        return x * 0 + w.reshape(1, -1, 1, 1, 1)

    path = str(tmp_path / "w.safetensors")
    res = Trainer(TrainConfig(steps=30, lr=0.05, batch_size=4)).run(
        {"bias": w}, model_fn, lambda s, g, bs: latents[:bs], "flow", checkpoint_path=path)
    assert res.losses[-1] < res.losses[0]
    with pytest.raises(AdapterFileError, match="other parameters"):
        Trainer(TrainConfig(steps=31)).run({"other": torch.zeros(16, requires_grad=True)}, model_fn,
                                           lambda s, g, bs: latents[:bs], "flow", resume_from=path)
    with torch.inference_mode():
        frozen = torch.zeros(3, requires_grad=False)
    with pytest.raises(ValueError, match="inference"):
        Trainer(TrainConfig(steps=1)).run({"x": frozen}, model_fn, lambda s, g, bs: latents[:bs], "flow")


def test_optimizer_tensor_round_trip():
    torch.manual_seed(0)
    p = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    opt = torch.optim.AdamW(p, lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (p[0].square().sum() + p[1].sum()).backward()
        opt.step()
    tensors, info = optimizer_to_tensors(opt, ["a", "b"])
    assert set(tensors) == {f"optim/{n}/{k}" for n in "ab" for k in ("exp_avg", "exp_avg_sq", "step")}
    assert info["type"] == "AdamW" and info["param_groups"][0]["param_names"] == ["a", "b"]
    q = [torch.nn.Parameter(t.detach().clone()) for t in p]
    opt2 = torch.optim.AdamW(q, lr=0.1)
    optimizer_from_tensors(opt2, ["a", "b"], tensors, info)
    for o, params in ((opt, p), (opt2, q)):
        o.zero_grad()
        (params[0].square().sum() + params[1].sum()).backward()
        o.step()
    assert all(torch.equal(x, y) for x, y in zip(p, q))


def test_loss_curve_image():
    img = loss_curve_image([1.0 / (i + 1) for i in range(200)], width=300, height=120)
    assert img.shape == (1, 120, 300, 3) and img.dtype == torch.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    assert (img < 0.7).any()  # something is drawn
    assert loss_curve_image([]).shape == (1, 256, 512, 3)
    assert loss_curve_image([0.5]).shape == (1, 256, 512, 3)
    assert loss_curve_image([0.5, float("nan"), 0.4], log_scale=True).shape == (1, 256, 512, 3)


def test_condition_dropout_split():
    from adapters.training import condition_dropout

    # text only: the same draw as before the split existed (u < p)
    cfg = TrainConfig(cond_dropout=0.3)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    text, image = condition_dropout(cfg, 1000, g1)
    assert torch.equal(text, torch.rand(1000, generator=g2) < 0.3) and not image.any()
    # the dual-guidance split: exclusive outcomes with the configured shares
    cfg = TrainConfig(cond_dropout=0.1, image_dropout=0.2, both_dropout=0.05)
    text, image = condition_dropout(cfg, 40000, torch.Generator().manual_seed(0))
    both = (text & image).float().mean()
    assert abs(float(both) - 0.05) < 0.01
    assert abs(float((text & ~image).float().mean()) - 0.1) < 0.01
    assert abs(float((image & ~text).float().mean()) - 0.2) < 0.01
    with pytest.raises(ValueError, match="exceed"):
        TrainConfig(cond_dropout=0.6, image_dropout=0.6)


def test_schedule_sigma_sampling_draws_the_models_own_levels():
    table = (0.002, 0.5, 10.0, 700.0)
    cfg = TrainConfig(sigma_sampling="schedule", sigma_table=table)
    s = sample_sigmas(cfg, 4000, torch.Generator().manual_seed(0))
    values, counts = torch.unique(s, return_counts=True)
    torch.testing.assert_close(values, torch.tensor(table, dtype=torch.float32))
    assert counts.min() > 900  # uniform over the levels
    with pytest.raises(ValueError, match="sigma_table"):
        TrainConfig(sigma_sampling="schedule")
    assert TrainConfig.from_dict(cfg.to_dict()).sigma_table == table


@pytest.mark.parametrize("parts", [2, 4])
def test_grad_accumulation_of_k_micro_batches_equals_one_batch(data, parts):
    """The same draws, split into k micro-batches whose weighted gradients add up: the same run as one batch."""
    latents, context = data
    runs = {}
    for k in (1, parts):
        model = _model()
        cfg = TrainConfig(steps=4, lr=1e-3, batch_size=4, seed=3, cond_dropout=0.5, grad_accumulation=k)
        res = Trainer(cfg).run(model, model, _batch_fn(latents, context), "flow")
        runs[k] = (res.losses, _params(model))
    for a, b in zip(runs[1][0], runs[parts][0]):
        assert a == pytest.approx(b, rel=1e-5)
    for name, value in runs[1][1].items():
        torch.testing.assert_close(runs[parts][1][name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_grad_accumulation_must_divide_the_batch():
    with pytest.raises(ValueError, match="grad_accumulation 3 must .* divide batch_size 4"):
        TrainConfig(batch_size=4, grad_accumulation=3)


def test_bf16_training_lowers_the_loss_with_fp32_master_weights(data):
    latents, context = data
    model = _model()
    seen = set()
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    cfg = TrainConfig(steps=60, lr=2e-3, batch_size=4, seed=1, cond_dropout=0.1, training_dtype="bf16")
    res = Trainer(cfg).run(model, model, _batch_fn(latents, context), "flow")
    first, last = sum(res.losses[:10]) / 10, sum(res.losses[-15:]) / 15
    assert last < 0.7 * first, (first, last)
    assert seen == {torch.bfloat16}  # the forward ran in bf16 ...
    assert all(p.dtype == torch.float32 for p in model.parameters())  # ... the master weights stay fp32


def test_fp16_on_the_cpu_is_refused(data):
    latents, context = data
    model = _model()
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        Trainer(TrainConfig(steps=1, batch_size=2, training_dtype="fp16")).run(model, model,
                                                                               _batch_fn(latents, context), "flow")
