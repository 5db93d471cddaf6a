"""Payments storage adapters: PostgreSQL (real) and SQLite (embedded)."""
