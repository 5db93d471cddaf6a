"""`python -m services.orders` serves the orders domain alone."""

import sys

from services.kit.config import Settings
from services.mesh.launcher import serve

if __name__ == "__main__":
    sys.exit(serve("orders", Settings.from_env()))
