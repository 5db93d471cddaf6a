"""`python -m services.notifications` serves the notifications domain alone."""

import sys

from services.kit.config import Settings
from services.mesh.launcher import serve

if __name__ == "__main__":
    sys.exit(serve("notifications", Settings.from_env()))
