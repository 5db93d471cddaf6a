"""Adapters of the orders storage port: cassandra.py (real), sqlite.py (embedded)."""
