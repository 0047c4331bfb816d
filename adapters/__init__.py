"""The outside world: settings, event store wiring, clock, policy files, school registry, auth, logging."""
