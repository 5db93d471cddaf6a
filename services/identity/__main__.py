"""`python -m services.identity` serves the identity domain alone."""

from services.kit.config import Settings
from services.kit.launcher import serve

raise SystemExit(serve("identity", Settings.from_env()))
