"""Identity: accounts, argon2 password hashes, server-side sessions stored as SHA-256 hashes, CSRF tokens."""
