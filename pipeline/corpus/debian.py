"""Download Debian packages into the project's cache without touching the machine's apt setup.

A private apt configuration under ``<cache>/apt`` (its own sources list, package lists, archive
cache and preferences; the system's sources are not read) points at the Debian release of the
machine with the components ``main contrib non-free``; ``apt-get update`` then
``apt-get download`` fetch the .debs into ``<cache>/debs``. Nothing is installed, no root is
needed, and the download happens once per machine (the .debs stay in the cache).

``<cache>`` is ``$ZS2020_CACHE``, else ``data/cache`` of the repository (git-ignored).
``ZS2020_DEBIAN_MIRROR`` and ``ZS2020_DEBIAN_RELEASE`` override the mirror and the release
(a non-Debian machine uses ``DEFAULT_RELEASE``).
"""
from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import subprocess
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path

from pipeline.core.errors import UserError

CACHE_ENV = "ZS2020_CACHE"
MIRROR_ENV, RELEASE_ENV = "ZS2020_DEBIAN_MIRROR", "ZS2020_DEBIAN_RELEASE"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_RELEASE = "bookworm"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
COMPONENTS = "main contrib non-free"
REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "data" / "cache")


def machine_release() -> str:
    """The Debian release to fetch from: ``$ZS2020_DEBIAN_RELEASE``, the machine's own codename
    on Debian, else ``DEFAULT_RELEASE``."""
    if os.environ.get(RELEASE_ENV):
        return os.environ[RELEASE_ENV]
    fields = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            fields[key] = value.strip().strip('"')
    except OSError:
        pass
    if fields.get("ID") == "debian" and fields.get("VERSION_CODENAME"):
        return fields["VERSION_CODENAME"]
    return DEFAULT_RELEASE


@contextmanager
def _locked(folder: Path):
    """One download at a time per cache folder (two builds started together wait for each other)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _apt_options(apt: Path) -> list[str]:
    settings = {
        "Dir::Etc::SourceList": apt / "sources.list", "Dir::Etc::SourceParts": apt / "sources.list.d",
        "Dir::Etc::Preferences": apt / "preferences", "Dir::Etc::PreferencesParts": apt / "preferences.d",
        "Dir::State::Lists": apt / "lists", "Dir::Cache": apt / "cache", "Dir::State::extended_states":
        apt / "extended_states", "APT::Sandbox::User": pwd.getpwuid(os.getuid()).pw_name,
        "Acquire::Languages": "none", "Debug::NoLocking": "true",
    }
    return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]


def _run_apt(args: list[str], cwd: Path, what: str) -> None:
    try:
        result = subprocess.run(["apt-get", "-q", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError(f"cannot download {what}: apt-get is not installed (a Debian or Ubuntu machine is "
                        "needed, or copy the .debs into the cache)") from None
    lines = result.stderr.splitlines()
    # apt-get update exits 0 when an index cannot be fetched ("W: Failed to fetch ...")
    problems = [ln for ln in lines if ln.startswith("E:")] + [ln for ln in lines if ln.startswith("W: Failed")]
    if result.returncode != 0 or problems:
        reason = (problems or lines or [f"apt-get exited with status {result.returncode}"])[0]
        raise UserError(f"cannot download {what} from the Debian archive: {reason}")


def fetch_debs(packages: tuple[str, ...], stats: dict | None = None) -> dict[str, Path]:
    """package -> its .deb in ``<cache>/debs``, downloading the missing ones (see the module doc).
    ``stats`` receives ``downloaded`` (bool), ``seconds`` and ``bytes``."""
    folder = cache_root()
    debs_dir = folder / "debs"
    what = f"the Debian packages {', '.join(packages)} (component non-free)"

    def found() -> dict[str, Path]:
        out = {}
        for package in packages:
            hits = sorted(debs_dir.glob(f"{package}_*.deb"))
            if hits:
                out[package] = hits[-1]
        return out

    have = found()
    if stats is not None:
        stats.update(downloaded=False, seconds=0.0, bytes=sum(p.stat().st_size for p in have.values()))
    if len(have) == len(packages):
        return have
    start = time.perf_counter()
    with _locked(folder):
        have = found()
        missing = [p for p in packages if p not in have]
        if missing:
            if not Path(KEYRING).is_file():
                raise UserError(f"cannot download {what}: {KEYRING} is missing (install debian-archive-keyring)")
            apt = folder / "apt"
            for sub in ("sources.list.d", "preferences.d", "lists/partial", "cache/archives/partial"):
                (apt / sub).mkdir(parents=True, exist_ok=True)
            mirror = os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
            (apt / "sources.list").write_text(f"deb [signed-by={KEYRING}] {mirror} {machine_release()} {COMPONENTS}\n")
            options = _apt_options(apt)
            _run_apt([*options, "update"], folder, what)
            partial = folder / "debs.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            _run_apt([*options, "download", *missing], partial, what)
            debs_dir.mkdir(exist_ok=True)
            for deb in sorted(partial.glob("*.deb")):
                os.replace(deb, debs_dir / deb.name)
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(apt / "lists", ignore_errors=True)          # 20 MB of package lists
            shutil.rmtree(apt / "cache", ignore_errors=True)
        have = found()
    if len(have) != len(packages):
        raise UserError(f"cannot download {what}: apt-get did not deliver {', '.join(set(packages) - set(have))}")
    if stats is not None:
        stats.update(downloaded=bool(missing), seconds=time.perf_counter() - start,
                     bytes=sum(p.stat().st_size for p in have.values()))
    return have


def deb_version(deb: Path) -> str:
    """``0.8.0+deb-1`` of ``uqm-voice_0.8.0+deb-1_all.deb`` (apt names files by version)."""
    return deb.name.split("_")[1]


def unpack(deb: Path, dest: Path, members: tuple[str, ...]) -> None:
    """Extract the named files (``usr/...`` paths) of a .deb's data archive into ``dest``."""
    with open(deb, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise UserError(f"{deb}: not a Debian package; delete it to download it again")
        while True:                                  # ar members: 60-byte header, data, pad to even
            header = fh.read(60)
            if len(header) < 60:
                raise UserError(f"{deb}: no data archive inside; delete it to download it again")
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            if name.startswith("data.tar"):
                break
            fh.seek(size + size % 2, 1)
        wanted = set(members)
        with tarfile.open(fileobj=fh, mode="r|*") as tar:
            for info in tar:
                path = info.name.removeprefix("./")
                if path not in wanted or not info.isfile():
                    continue
                target = dest / path
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".part")
                with tar.extractfile(info) as src, open(partial, "wb") as out:
                    shutil.copyfileobj(src, out)
                os.replace(partial, target)
                wanted.discard(path)
    if wanted:
        raise UserError(f"{deb}: {', '.join(sorted(wanted))} missing from the package")
