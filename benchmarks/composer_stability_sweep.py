"""Stability sweep of the Score Composer's settings on the shipped tiny pair.

    python benchmarks/composer_stability_sweep.py            # the full grid (a few minutes on a CPU)
    python benchmarks/composer_stability_sweep.py --no-check # sample every combination, refusals ignored

Every combination of prior strength, cfg, strength schedule, composition window, Langevin steps and step
size, and flow space (the composer's allowed ranges, edges included) either is refused before sampling by
``samplers.composition.check_settings`` (the message names the settings and what would work) or samples to
the end with every composed estimate finite and within ``BOUND`` and a finite final latent within ``BOUND``.
``tests/test_composer_stability.py`` runs a smaller grid of the same code in CI.

The sampler is the composer node's own rule (``Composition.evaluate`` with the divergence check the ComfyUI
guider applies), an Euler loop over a shifted flow schedule, on the shipped tiny prior / domain pair
(``adapters/weights``) with small latents, so one combination costs milliseconds.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import _root  # noqa: E402,F401  (the repository root on sys.path)

from devtools.stability import FULL_GRID, SMALL_GRID, sweep  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-check", action="store_true", help="sample every combination (no refusal)")
    ap.add_argument("--small", action="store_true", help="the CI grid")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    grid = SMALL_GRID if args.small else FULL_GRID
    t0 = time.time()
    res = sweep(grid, check=not args.no_check)
    print(f"{res['total']} combinations: {res['refused']} refused before sampling, {res['ok']} finite and bounded "
          f"(largest magnitude {res['peak']:.3g}), {len(res['failures'])} failed ({time.time() - t0:.0f}s)")
    for settings, why in res["failures"][:40]:
        print("  FAILED", settings, why)
    for msg in res["messages"].values():
        print("  refusal:", msg)
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
