"""Business rules: pure Python, no web framework and no database driver."""
