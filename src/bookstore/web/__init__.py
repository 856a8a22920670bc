"""The shop page, the cluster view and the ShiViz trace export."""
