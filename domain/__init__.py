"""The policy core: the student case aggregate, its events and errors, and the policy rules (pure Python)."""
