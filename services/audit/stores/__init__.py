"""Adapters of the audit storage port: cassandra.py (real), sqlite.py (embedded)."""
