import os
import sys

# Host-free tests import the core packages (`adapters`, `samplers`) from the repository root and the
# test helpers (such as gaussian_reference) from this folder.
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)
