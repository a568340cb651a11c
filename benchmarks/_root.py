"""The benchmarks' one entry point to the repository: puts its root on ``sys.path`` so that every benchmark script
imports the core packages (``adapters``, ``samplers``) and the shared support (``devtools``) the same way."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
