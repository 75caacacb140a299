"""Placeholder: filled by the dataset work."""
