"""`python -m services.customers` serves the customers domain alone."""

import sys

from services.kit.config import Settings
from services.mesh.launcher import serve

if __name__ == "__main__":
    sys.exit(serve("customers", Settings.from_env()))
