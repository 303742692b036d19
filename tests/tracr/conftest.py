import os
import sys

try:
    import edgeprune.tracr  # noqa: F401
except ImportError:  # running from a checkout that was not installed
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
