"""`python -m services.polls` serves the polls domain alone (what one Kubernetes pod runs)."""

from services.kit.config import Settings
from services.mesh.launcher import serve

if __name__ == "__main__":
    raise SystemExit(serve("polls", Settings.from_env()))
