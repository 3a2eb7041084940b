"""The image's build stage copies what building the package reads. Docker cannot run where aquami
is built and tested (README, "Containers"), so this reads the Dockerfile as the build would."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: setuptools' default ``license-files`` (PEP 639; setuptools 77, which pyproject.toml requires):
#: the files of the project's root it puts into the package's ``dist-info/licenses/``.
LICENSE_FILE_PATTERNS = ("LICEN[CS]E*", "COPYING*", "NOTICE*", "AUTHORS*")


def build_stage_copies() -> set[str]:
    """The sources of the build stage's ``COPY`` lines (a later stage's ``COPY --from`` aside)."""
    sources: set[str] = set()
    in_build = False
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].upper() == "FROM":
            in_build = [w.lower() for w in words[-2:]] == ["as", "build"]
        elif in_build and words[0].upper() == "COPY":
            arguments = [w for w in words[1:] if not w.startswith("--")]
            sources.update(a.removeprefix("./").rstrip("/") for a in arguments[:-1])  # the last: where to
    return sources


def test_the_build_stage_copies_what_the_package_is_built_from() -> None:
    """Before, LICENSE was not copied: the image's aquami-0.1.0.dist-info held no licence (a wheel
    built from the copied files has none; with it, dist-info/licenses/LICENSE), so an image pushed to
    a registry carried aquami without the Apache-2.0 text that section 4a asks to go with it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = build_stage_copies()
    wanted = {"pyproject.toml", "constraints.txt", project["project"]["readme"]}
    licenses = {
        p.name for p in ROOT.iterdir() if p.is_file() and any(fnmatch.fnmatch(p.name, g) for g in LICENSE_FILE_PATTERNS)
    }
    assert licenses, "no licence file at the project's root"
    wanted |= licenses
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        packages = (p for p in ROOT.iterdir() if (p / "__init__.py").is_file())  # not aquami.egg-info
        wanted |= {p.name for p in packages if fnmatch.fnmatch(p.name, pattern)}
    assert wanted - copied == set(), f"the Dockerfile's build stage does not copy {sorted(wanted - copied)}"
