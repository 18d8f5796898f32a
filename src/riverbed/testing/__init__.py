"""Test helpers for users' suites: an embedded riverbed broker on a free port."""
