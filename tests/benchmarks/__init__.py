import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``benchmarks/{script} {args}`` from the checkout (as a user would) and fail the test on a non-zero exit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_quick(script: str, out: Path) -> dict:
    """Run ``benchmarks/{script} --quick --out {out}`` and return its stdout and the JSON it wrote."""
    result = run_script(script, "--quick", "--out", str(out), timeout=600)
    return {"stdout": result.stdout, "report": json.loads(out.read_text())}
