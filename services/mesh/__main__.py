"""`python -m services.mesh` is the `agora-mesh` command."""

import sys

from services.mesh.cli import main

if __name__ == "__main__":
    sys.exit(main())
