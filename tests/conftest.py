import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# tools/ is not a package that gets installed; make the code generator importable for its tests.
sys.path.insert(0, str(ROOT / "tools"))
