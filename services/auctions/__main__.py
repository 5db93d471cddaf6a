"""`python -m services.auctions` serves the auctions domain alone."""

from services.kit.config import Settings
from services.mesh.launcher import serve

raise SystemExit(serve("auctions", Settings.from_env()))
