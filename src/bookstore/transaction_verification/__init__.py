"""Transaction verification: events a (items), b (user data) and c (card)."""
