"""Generated gRPC code (scripts/gen_protos.py). Do not edit."""
