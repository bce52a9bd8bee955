"""Best-of-N emergence (being built: see its issue)."""
