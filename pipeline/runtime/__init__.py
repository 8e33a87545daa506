"""Runtimes: each owns the loops, channels and lifecycles of the stages on one engine (local, ray)."""
