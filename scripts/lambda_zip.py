"""Build the deployable Lambda zip: the handler's modules and its runtime dependencies only.

Reproducible: the dependencies are the exact wheels pinned (with hashes) in
requirements-lambda.txt, unpacked as they are (no installer writes timestamps or caches), and
the zip has sorted entries, a fixed timestamp and fixed permissions: two builds of one commit
give the same bytes. boto3 is left out: the Lambda Python runtime provides it.

Usage:
  python scripts/lambda_zip.py [OUTPUT.zip]               wheels from the package index (cached
                                                          in build/lambda-wheels)
  python scripts/lambda_zip.py [OUTPUT.zip] --from-venv   the pinned names as installed in this
                                                          Python (offline; versions may differ
                                                          from the pins: for tests only)
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ddb2es_cli.stream import LAMBDA_MODULES  # noqa: E402

REQUIREMENTS = ROOT / "requirements-lambda.txt"
WHEELS = ROOT / "build" / "lambda-wheels"
# The earliest time a zip can hold; every entry gets it, so the build time never shows.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644  # regular file, rw-r--r--: Lambda only reads the code
Entries = dict[str, bytes]


def pins(requirements: Path = REQUIREMENTS) -> dict[str, str]:
    """Normalized name -> exact version, from `name==version` lines."""
    text = requirements.read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;]+)", line)
        if not match:
            raise SystemExit(f"{requirements}: not an exact pin: {line!r}")
        found[normalize(match.group(1))] = match.group(2)
    return found


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _skipped(name: str) -> bool:
    """Byte code is built by the runtime; caches and installer records are not the code."""
    parts = name.split("/")
    return (
        name.endswith("/")
        or "__pycache__" in parts
        or name.endswith((".pyc", ".pyo"))
        or (len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "INSTALLER")
        or (len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "REQUESTED")
        or (len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "direct_url.json")
    )


def download_wheels(requirements: Path = REQUIREMENTS, dest: Path = WHEELS) -> list[Path]:
    """The pinned wheels (pure Python, hashes checked by pip), downloaded once into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "--only-binary=:all:",
            "--platform",
            "any",
            "--python-version",
            "3.12",
            "--implementation",
            "py",
            "--abi",
            "none",
            "--dest",
            str(dest),
            "-r",
            str(requirements),
        ],
        check=True,
    )
    wanted = pins(requirements)
    wheels = []
    for wheel in sorted(dest.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        if wanted.get(normalize(name)) == version:
            wheels.append(wheel)
    if len(wheels) != len(wanted):
        raise SystemExit(f"expected {len(wanted)} pinned wheels in {dest}, found {len(wheels)}")
    return wheels


def wheel_entries(wheels: list[Path]) -> Entries:
    """Every file of the wheels, at the path an installer would put it (pure wheels: as is)."""
    entries: Entries = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                if _skipped(info.filename) or ".data/" in info.filename:
                    continue
                entries[info.filename] = archive.read(info)
    return entries


def venv_entries(requirements: Path = REQUIREMENTS) -> Entries:
    """The pinned distributions' files as installed in this Python (offline builds, tests)."""
    entries: Entries = {}
    for name, version in sorted(pins(requirements).items()):
        dist = metadata.distribution(name)
        if dist.version != version:
            print(f"note: {name} {dist.version} installed, {version} pinned", file=sys.stderr)
        for file in dist.files or ():
            path = file.as_posix()
            if path.startswith("..") or _skipped(path):
                continue  # scripts in bin/, caches
            entries[path] = Path(str(dist.locate_file(file))).read_bytes()
    return entries


def handler_entries() -> Entries:
    return {f"ddb2es_cli/{m}": (ROOT / "ddb2es_cli" / m).read_bytes() for m in LAMBDA_MODULES}


def write_zip(entries: Entries, output: Path) -> Path:
    """Sorted entries, one timestamp, one mode, one compression: the bytes depend only on the
    files' names and contents."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.create_system = 3  # Unix, so the mode below is read
            info.external_attr = FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name], compresslevel=9)
    tmp.replace(output)
    return output


def build(output: Path, from_venv: bool = False) -> Path:
    deps = venv_entries() if from_venv else wheel_entries(download_wheels())
    clash = sorted(set(deps) & set(handler_entries()))
    if clash:
        raise SystemExit(f"a dependency ships files of the handler's package: {clash[:3]}")
    return write_zip({**deps, **handler_entries()}, output)


def _files(argv: list[str]) -> Iterator[str]:
    yield from (a for a in argv if not a.startswith("--"))


if __name__ == "__main__":
    args = sys.argv[1:]
    given = list(_files(args))
    out = build(
        Path(given[0]) if given else ROOT / "build" / "ddb2es-lambda.zip",
        from_venv="--from-venv" in args,
    )
    size = out.stat().st_size
    print(f"{out} ({size / 1e6:.1f} MB, {size} bytes); handler: ddb2es_cli.stream.lambda_handler")
