"""Running a snippet in a fresh Python process with a chosen OTEL_* environment."""

from __future__ import annotations

import os
import subprocess
import sys


def run_python(code: str, **otel_env: str) -> None:
    """Run `code` in a new interpreter whose only OTEL_* variables are `otel_env` (and
    every trace sampled, unless `otel_env` names a sampler)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "OTEL_TRACES_SAMPLER": "parentbased_always_on", **otel_env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
