"""pytest plugin: fixtures that start an embedded riverbed broker (filled in with the broker)."""
