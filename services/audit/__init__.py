"""audit: the trail of everything that happened in the mesh."""
