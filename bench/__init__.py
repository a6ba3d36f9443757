"""journey-fanout."""
