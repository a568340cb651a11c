"""Guidance and score-composition math. Host-free: nothing here imports ComfyUI."""
