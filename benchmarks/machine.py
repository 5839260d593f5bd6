"""What the benchmarks record about the machine they ran on."""

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    """The machine a benchmark ran on: CPU model, cores and Python version."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()}
