"""Train Adapters and Load Adapters: the one trainer and the one loader for every adapter kind (SimDA, AID, FCA
and any kind registered in ``adapters/registry.py``). Their kind lists, tooltips and descriptions come from the
kind classes; the work is in ``binding/training.py``."""

from __future__ import annotations

from comfy_api.latest import io

from ..adapters import registry
from ..adapters.latent_shift import MODES
from ..adapters.plots import loss_curve_image
from .binding.training import load_adapters, train_adapters
from .common import CATEGORY, model_files, TRAINED_FILE_NAME_TOOLTIP, training_memory_inputs

CAT_ADAPTERS = f"{CATEGORY}/adapters"
SHIFT_CHOICES = list(MODES) + ["none"]
MODELS = {"unet": "SD 1.5 / SDXL / SVD", "wan": "Wan 2.1"}


def _kinds_text(models: bool = False) -> str:
    """One clause per registered kind, from its class (the help-page test checks the pages against the same)."""
    parts = []
    for k in registry.all_kinds():
        where = ", ".join(k.families) if k.families else " or ".join(MODELS.get(a, a) for a in k.architectures)
        parts.append(f"{k.name}: {k.description.split(': ', 1)[-1]}" + (f" ({where})" if models else ""))
    return "; ".join(parts)


def _examples_text() -> str:
    return ", ".join(f"{k.example_text()} for {k.name}" for k in registry.all_kinds())


class TrainAdapter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_TrainAdapter",
            display_name="Train Adapters",
            category=CAT_ADAPTERS,
            description=(
                "Trains small adapters of any kind inside a frozen model on your clips; the model's own weights never "
                "change. " + _kinds_text() + ". Saves <name>.safetensors and <name>_checkpoint.safetensors in "
                "models/video_adapters; Cancel stops after writing the checkpoint, resume_from continues. One clip "
                "is enough for SimDA's one-shot editing."),
            inputs=[
                io.Model.Input("model", tooltip="The frozen base model (SD 1.5, SDXL, SVD or Wan 2.1)."),
                io.Latent.Input("clips", tooltip="Training video latents from VAE Encode with the model's VAE: the "
                                "frames of the clips in the batch [frames, C, H, W] (SD/SVD), or [clips, C, T, H, W] "
                                "(Wan)."),
                io.Conditioning.Input("positive", tooltip="The clips' captions, encoded with the model's text "
                                      "encoder: one entry for all clips, or one per clip (as Load Training Clips "
                                      "gives them). Image-to-video conditions (SVD, Wan I2V) travel in it too."),
                io.Combo.Input("kind", options=registry.kinds(), default="simda",
                               tooltip="Adapter kind. " + _kinds_text(models=True) + "."),
                io.Int.Input("frames", default=0, min=0, max=4096,
                             tooltip="Frames per clip when the batch holds several clips (SD/SVD); 0: the whole "
                                     "batch is one clip."),
                io.Int.Input("steps", default=300, min=1, max=1_000_000,
                             tooltip="Total optimisation steps, counting those of a resumed checkpoint (SimDA's "
                                     "editing recipe: 200-300)."),
                io.Float.Input("learning_rate", default=5e-5, min=1e-7, max=1e-1, step=1e-5, round=1e-7,
                               tooltip="AdamW learning rate (SimDA's editing recipe: 5e-5; FCA's paper: 1e-3). Kinds "
                                       "with a training recipe (fca: cosine decay after a warm-up of min(200, "
                                       "steps/10), betas 0.9/0.95, clipping 1.0) schedule it from this peak."),
                io.Int.Input("batch_size", default=1, min=1, max=64, tooltip="Clips per step."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Seed of clip order, noise levels and noise: the same seed gives the same run."),
                io.Combo.Input("latent_shift", options=SHIFT_CHOICES, default="simda",
                               tooltip="simda adapters only: the self-attention they train with and keep (simda / "
                                       "previous_frame latent shift, or none); must be none on Wan. Other kinds "
                                       "take it at its default or none."),
                io.Int.Input("checkpoint_every", default=100, min=0, max=1_000_000,
                             tooltip="Write the checkpoint every this many steps (0: only when stopped and at the end)."),
                io.String.Input("file_name", default="simda/my_clip",
                                tooltip=TRAINED_FILE_NAME_TOOLTIP),
                io.Combo.Input("resume_from", options=["none"] + model_files(), default="none", optional=True,
                               tooltip="A *_checkpoint.safetensors of the same adapters to continue from."),
                io.Float.Input("text_dropout", default=0.0, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Share of samples trained without their text (replaced by negative, or zeros): "
                                       "what text classifier-free guidance needs. Dual guidance (image and text "
                                       "scales) uses all three dropouts, e.g. 0.05 each (InstructPix2Pix)."),
                io.Float.Input("image_dropout", default=0.0, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Share of samples trained without their image condition (image-to-video "
                                       "models: the start-image latent, mask and CLIP-vision features are removed)."),
                io.Float.Input("both_dropout", default=0.0, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Share of samples trained with neither text nor image condition."),
                io.String.Input("settings", default="", multiline=True, optional=True,
                                tooltip="Settings of the adapter kind as JSON, for example " + _examples_text()
                                        + ". Empty: the kind's defaults. Unknown keys and values of the wrong type "
                                        "are refused, naming the setting."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="The encoded empty prompt, used for samples whose text is dropped (text "
                                              "encoders do not map an empty prompt to zeros). Default: zeros."),
                *training_memory_inputs("the base model's"),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="The base model with the trained adapters (strength 1)."),
                io.String.Output(display_name="file_name", tooltip="The saved adapter file, relative to "
                                 "models/video_adapters (for Load Adapters)."),
                io.Image.Output(display_name="loss_curve", tooltip="Training loss per step (light) and its moving "
                                "average (dark)."),
                io.String.Output(display_name="summary", tooltip="Trainable parameters, their share of the base "
                                 "model, steps and final loss."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, clips, positive, kind, frames, steps, learning_rate, batch_size, seed, latent_shift,
                checkpoint_every, file_name, resume_from="none", text_dropout=0.0, image_dropout=0.0,
                both_dropout=0.0, settings="", negative=None, gradient_checkpointing=True, training_dtype="auto",
                grad_accumulation=1) -> io.NodeOutput:
        patched, rel, losses, text = train_adapters(
            model, clips, positive, kind, frames, steps, learning_rate, batch_size, seed, checkpoint_every,
            file_name, resume_from,
            dropouts={"text_dropout": text_dropout, "image_dropout": image_dropout, "both_dropout": both_dropout},
            settings=settings, negative=negative, options={"latent_shift": latent_shift},
            option_defaults={"latent_shift": "simda"}, gradient_checkpointing=bool(gradient_checkpointing),
            training_dtype=training_dtype, grad_accumulation=int(grad_accumulation))
        return io.NodeOutput(patched, rel, loss_curve_image(losses), text)


# ----------------------------------------------------------------------------------------------------
# loading


class LoadAdapter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VA_LoadAdapter",
            display_name="Load Adapters",
            category=CAT_ADAPTERS,
            description=("Injects trained adapters (models/video_adapters) into a model through ComfyUI's patch API; "
                         "the output is a plain MODEL for any sampler. Every kind loads here (" +
                         ", ".join(registry.kinds()) + "); adapters made for another model family or size are "
                         "refused. SimDA adapters also switch on the latent-shift attention they were trained "
                         "with."),
            inputs=[
                io.Model.Input("model", tooltip="The base model the adapters were trained on."),
                io.Combo.Input("adapter_name", options=model_files(),
                               tooltip="An adapter file in models/video_adapters (from Train Adapters)."),
                io.Float.Input("strength", default=1.0, min=-2.0, max=2.0, step=0.05,
                               tooltip="Scale of the adapters' contribution: 0 = no adapter output, 1 = as trained. "
                                       "Latent-shift attention the adapters were trained with stays on at any "
                                       "strength (SD 1.5, SDXL, SVD)."),
                io.Int.Input("frames", default=0, min=0, max=4096, optional=True,
                             tooltip="Frames per video for frame-wise models (0: the whole batch of each "
                                     "cond/uncond pass is one video)."),
            ],
            outputs=[
                io.Model.Output(tooltip="The model with the adapters."),
                io.String.Output(display_name="summary", tooltip="Kind, family, blocks, parameters and training."),
            ],
        )

    @classmethod
    def execute(cls, model, adapter_name, strength, frames=0) -> io.NodeOutput:
        return io.NodeOutput(*load_adapters(model, adapter_name, strength, frames))


NODES = [TrainAdapter, LoadAdapter]
