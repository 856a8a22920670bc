"""Suggestions: event f (books to suggest with an approved order)."""
