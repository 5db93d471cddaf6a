"""`python -m services.identity` serves the identity domain alone."""

from services.kit.config import Settings
from services.mesh.launcher import serve

raise SystemExit(serve("identity", Settings.from_env()))
