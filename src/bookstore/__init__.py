"""bookstore: a distributed online bookstore checkout."""

__version__ = "0.1.0"
