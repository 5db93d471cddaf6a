"""`python -m services.audit` serves the audit domain alone."""

import sys

from services.kit.config import Settings
from services.mesh.launcher import serve

if __name__ == "__main__":
    sys.exit(serve("audit", Settings.from_env()))
