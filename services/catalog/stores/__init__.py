"""Adapters of the catalog storage port: mongo.py (real), sqlite.py (embedded)."""
