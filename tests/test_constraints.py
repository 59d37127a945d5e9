"""The install is repeatable: constraints.txt pins the whole resolved set, agrees with the
direct pins, and every install path (README, CI, the Docker image) uses it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            package, version = line.split("==")
            pins[re.sub(r"\[.*\]", "", package).lower().replace("_", "-")] = version.strip()
    return pins


def test_constraints_pin_every_direct_dependency_at_its_version():
    constraints = _pins("constraints.txt")
    for file in ("requirements.txt", "requirements-test.txt"):
        for package, version in _pins(file).items():
            assert constraints.get(package) == version, (
                f"{file} pins {package}=={version} but constraints.txt has "
                f"{constraints.get(package)}: run tools/lock_constraints.sh"
            )


def test_constraints_hold_one_exact_version_per_package():
    lines = [line for line in (ROOT / "constraints.txt").read_text().splitlines()]
    entries = [line for line in lines if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[a-z0-9.\-]+==[^=\s]+", e) for e in entries), entries
    names = [e.split("==")[0] for e in entries]
    assert len(names) == len(set(names))
    assert len(names) > 2 * len(_pins("requirements.txt"))  # the transitive set, not the pins


def test_every_install_uses_the_constraints():
    readme = (ROOT / "README.md").read_text()
    assert 'pip install -c constraints.txt -e ".[test]"' in readme
    assert "-c constraints.txt" in (ROOT / ".ci" / "run").read_text()
    docker = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -c constraints.txt -r requirements.txt" in docker
