"""Reminder engine models (see SPEC.md)."""
