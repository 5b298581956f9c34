"""The one place fv's version is written (pyproject.toml reads it; every JSON record carries it)."""
__version__ = "0.1.0"
