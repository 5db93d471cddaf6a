"""`python -m services.payments` serves the payments domain alone."""

import sys

from services.kit.config import Settings
from services.mesh.launcher import serve

if __name__ == "__main__":
    sys.exit(serve("payments", Settings.from_env()))
