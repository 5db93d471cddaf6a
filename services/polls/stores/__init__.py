"""The polls domain's store adapters: postgres.py + mongo.py (real), sqlite.py (embedded)."""
