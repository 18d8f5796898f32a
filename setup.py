"""Optional C helpers (riverbed._native); everything else is configured in pyproject.toml.
A machine without a C compiler still installs riverbed: `optional=True` skips the extension and
the Python implementations take over."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("riverbed._native.recscan", ["src/riverbed/_native/recscan.c"], optional=True, extra_compile_args=["-O2"]),
        Extension("riverbed._native.cleanscan", ["src/riverbed/_native/cleanscan.c"], optional=True, extra_compile_args=["-O2"]),
    ]
)
