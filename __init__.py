"""Video Adapters: adapt frozen video diffusion models inside ComfyUI.

ComfyUI imports this package from custom_nodes/ and calls ``comfy_entrypoint``. The core packages
(``adapters``, ``samplers``) import no ComfyUI code; only ``nodes`` and ``samplers.guiders`` do.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import VideoAdaptersExtension

    return VideoAdaptersExtension()
