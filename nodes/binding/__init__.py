"""The binding of the host-free core to ComfyUI: the one description of a host model (``host``), the attach table
that installs any adapter kind's hooks with ComfyUI's patch API (``attach``), SimDA's model-wide latent-shift
patch (``latent_shift``) and the one trainer and loader for all kinds (``training``). The node modules one level
up hold node classes and call into here; the guiders' ComfyUI classes are ``samplers/guiders.py``."""
