"""vid-operator's reference stages (placeholder)."""
