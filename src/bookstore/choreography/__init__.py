"""The choreography engine shared by the three checkout services."""
