"""Placeholder: filled by the boxgen work."""
