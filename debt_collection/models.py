"""Collections models (see SPEC.md)."""
