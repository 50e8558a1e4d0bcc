"""The single place the tool's version is written (read by pyproject.toml and by provenance)."""

__version__ = "0.1.0"
