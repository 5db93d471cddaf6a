"""Chat store adapters: PostgreSQL (real) and SQLite (embedded), sharing the portable SQL in sql.py."""
