import os
import sys

# Host-free tests import the core packages (`adapters`, `samplers`) directly from the repository root.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
