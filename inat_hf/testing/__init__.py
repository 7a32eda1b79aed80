"""Helpers for the project's tests and benchmarks (no test framework needed): :mod:`~inat_hf.testing.azurite`."""
