"""The payment service: a simulated card processor and two-phase-commit participant."""
