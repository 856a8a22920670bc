"""The orchestrator's HTTP routes, one module per area; each has an `install(app, ...)`."""
