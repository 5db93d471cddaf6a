"""`python -m services.catalog` serves the catalog domain alone."""

import sys

from services.kit.config import Settings
from services.mesh.launcher import serve

if __name__ == "__main__":
    sys.exit(serve("catalog", Settings.from_env()))
