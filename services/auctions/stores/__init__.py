"""Auctions storage adapters: sqlite.py (embedded), postgres.py (real), sharing the portable SQL in sql.py."""
