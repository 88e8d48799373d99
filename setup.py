"""Build the private cffi module; all metadata lives in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["csrc/build_spawn.py:ffibuilder"])
