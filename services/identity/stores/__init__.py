"""Identity's storage adapters: sqlite.py (embedded) and postgres.py (real); all of identity's SQL lives
here. (No shared sql.py: the two differ in more than placeholders, e.g. how a taken name is found.)"""
