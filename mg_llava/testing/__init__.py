"""Helpers for tests and the CPU demo: tiny offline checkpoints and small real images."""
