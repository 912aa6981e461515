"""Domain types (pure data) and workflow parsing."""
