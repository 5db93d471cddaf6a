"""The polls domain's store adapters: postgres.py + mongo.py (real), sqlite.py (embedded); the two
SQL poll stores share their schema and queries in sql.py."""
