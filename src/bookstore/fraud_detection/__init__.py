"""Fraud detection: events d (user-data fraud) and e (card fraud)."""
