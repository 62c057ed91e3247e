"""Build the deployable Lambda zip: the handler's modules and its runtime dependencies only.

boto3 is left out: the Lambda Python runtime provides it.
Usage: python scripts/lambda_zip.py [OUTPUT.zip]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ddb2es_cli.stream import LAMBDA_DEPENDENCIES, LAMBDA_MODULES  # noqa: E402


def build(output: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(target),
                *LAMBDA_DEPENDENCIES,
            ],
            check=True,
        )
        package = target / "ddb2es_cli"
        package.mkdir()
        for module in LAMBDA_MODULES:
            shutil.copy2(ROOT / "ddb2es_cli" / module, package / module)
        for cache in target.rglob("__pycache__"):
            shutil.rmtree(cache)
        output.parent.mkdir(parents=True, exist_ok=True)
        archive = shutil.make_archive(str(output.with_suffix("")), "zip", target)
    return Path(archive)


if __name__ == "__main__":
    out = build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "ddb2es-lambda.zip")
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB); handler: ddb2es_cli.stream.lambda_handler")
