"""`make lambda-zip` is reproducible: exact pins, sorted entries, fixed times and modes.

The test builds from this virtualenv's installed packages (`--from-venv`), so it needs no
network; the normal build unpacks the pinned wheels through the same `write_zip`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

from ddb2es_cli.stream import LAMBDA_DEPENDENCIES, LAMBDA_MODULES

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "lambda_zip.py"
sys.path.insert(0, str(ROOT / "scripts"))

import lambda_zip  # noqa: E402


def build(output: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(output), "--from-venv"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_two_builds_give_the_same_bytes_and_report_the_size(tmp_path: Path) -> None:
    first = build(tmp_path / "one" / "ddb2es-lambda.zip")
    second = build(tmp_path / "two" / "ddb2es-lambda.zip")
    one = (tmp_path / "one" / "ddb2es-lambda.zip").read_bytes()
    assert one == (tmp_path / "two" / "ddb2es-lambda.zip").read_bytes()
    size = re.search(
        r"\(([\d.]+) MB, (\d+) bytes\); handler: ddb2es_cli\.stream\.lambda_handler", first
    )
    assert size and int(size.group(2)) == len(one), first
    assert "MB" in second


def test_the_zip_holds_the_handler_and_powertools_with_fixed_metadata(tmp_path: Path) -> None:
    build(tmp_path / "z.zip")
    with zipfile.ZipFile(tmp_path / "z.zip") as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {lambda_zip.FIXED_TIME}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert {f"ddb2es_cli/{m}" for m in LAMBDA_MODULES} <= set(names)
    assert "ddb2es_cli/stream_observe.py" in names
    assert "aws_lambda_powertools/metrics/__init__.py" in names
    assert "opensearchpy/__init__.py" in names and "elasticsearch/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith(("boto3/", "botocore/", "click/", "rich/"))]


def test_write_zip_ignores_file_times_and_order(tmp_path: Path) -> None:
    a = lambda_zip.write_zip({"b.py": b"2", "a/x.py": b"1"}, tmp_path / "a.zip")
    b = lambda_zip.write_zip({"a/x.py": b"1", "b.py": b"2"}, tmp_path / "b.zip")
    assert a.read_bytes() == b.read_bytes()


def test_every_dependency_is_pinned_exactly_within_its_range() -> None:
    pinned = lambda_zip.pins()
    text = (ROOT / "requirements-lambda.txt").read_text()
    assert text.count("--hash=sha256:") == len(pinned)  # pip checks every wheel it downloads
    for spec in LAMBDA_DEPENDENCIES:
        requirement = Requirement(spec)
        version = pinned.get(lambda_zip.normalize(requirement.name))
        assert version is not None, f"{requirement.name} is not pinned"
        assert requirement.specifier.contains(version), f"{requirement.name}=={version} not {spec}"
