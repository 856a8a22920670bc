"""Gemini for fraud detection and suggestions, with fallbacks.

client.py (the one google-genai client), errors.py (the one place provider
errors become ours), breaker.py, budget.py, calls.py (budget, breaker, one
retry), prompts.py (what every request shares), factory.py (AI on or off).
This package depends on no service: the AI judge and its requests live in
fraud_detection/ (ai_judge.py, ai_prompts.py), the AI recommender in
suggestions/ai_recommender.py.
"""
