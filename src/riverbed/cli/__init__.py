"""The command line: ``riverbed serve``, ``riverbed topic ...``, ``riverbed produce|consume``."""
