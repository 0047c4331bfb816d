"""Read models: one module per view, each rebuilt from the event log; tables register on adapters.db.metadata."""
