"""Notifications storage adapters: PostgreSQL (real) and SQLite (embedded)."""
