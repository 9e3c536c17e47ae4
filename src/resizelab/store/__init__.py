"""The results store: the SQLite database, leases, weights files, and the read side."""
