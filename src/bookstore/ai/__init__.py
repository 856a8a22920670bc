"""Gemini for fraud detection and suggestions, with fallbacks.

client.py (the one google-genai client), errors.py (the one place provider
errors become ours), breaker.py, calls.py (budget, breaker, one retry),
prompts.py (what is sent), fraud.py and suggestions.py (the AI judge and
recommender), factory.py (what a service runs, AI on or off).
"""
