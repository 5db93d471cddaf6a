"""Adapters of the customers storage port: postgres.py (real), sqlite.py (embedded)."""
