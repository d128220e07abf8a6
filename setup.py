"""Shim for tooling that still calls ``setup.py``; all metadata lives in pyproject.toml."""

from setuptools import setup

setup()
