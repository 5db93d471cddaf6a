"""Identity's storage adapters: sqlite.py (embedded) and postgres.py (real); all of identity's SQL lives here."""
