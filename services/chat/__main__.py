"""`python -m services.chat` serves the chat domain alone (what one replica runs)."""

import sys

from services.kit.config import Settings
from services.mesh.launcher import serve

if __name__ == "__main__":
    sys.exit(serve("chat", Settings.from_env()))
