"""The orchestrator: the HTTP face of the shop and the start of every checkout."""
