"""Child Python processes that run the same edgeprune as the tests do."""
import os
import sys

import edgeprune


def python_path(*first) -> str:
    """PYTHONPATH for a child: `first`, then the folder of the edgeprune this process imported (an
    installed one, or a checkout's python/ on PYTHONPATH), then this process's sys.path."""
    return os.pathsep.join([*map(str, first), os.path.dirname(os.path.dirname(edgeprune.__file__)), *sys.path])
