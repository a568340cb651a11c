"""Torch modules and training code of the pack. Host-free: nothing here imports ComfyUI."""
