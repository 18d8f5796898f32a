import sys
from pathlib import Path

from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
# tools/ is not a package that gets installed; make the code generator importable for its tests.
sys.path.insert(0, str(ROOT / "tools"))

# No per-example deadline: a loaded CI machine can stall any example for a few hundred
# milliseconds, which says nothing about the code under test (timing lives in benchmarks/).
settings.register_profile("riverbed", deadline=None)
settings.load_profile("riverbed")
