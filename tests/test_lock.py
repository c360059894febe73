"""The lock (requirements/*.txt, docs/reproducibility.md): it covers pyproject.toml, its files agree with each other
and with environment.yml, `make install` installs from it, and the environment holds exactly its versions."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from llmrec.core.provenance import installed, lock_drift, locked, normalize, python_of_lock

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# lock file -> what pyproject asks of it (the runtime dependencies plus these extras)
FILES = {"base.txt": (), "test.txt": ("test",), "widgets.txt": ("lab", "widgets"), "book.txt": ("book",)}


def wanted(extras) -> list[Requirement]:
    lists = [PYPROJECT["dependencies"], *(PYPROJECT["optional-dependencies"][e] for e in extras)]
    return [Requirement(r) for reqs in lists for r in reqs]


@pytest.mark.parametrize("name", FILES)
def test_each_lock_file_pins_what_pyproject_asks_within_its_ranges(name):
    pins = locked(LOCK / name)
    for req in wanted(FILES[name]):
        version = pins.get(normalize(req.name))
        assert version is not None, f"{name} lacks {req.name} (pyproject.toml asks for it): run `make lock`"
        assert req.specifier.contains(version, prereleases=True), \
            f"{name} pins {req.name}=={version}, outside pyproject's {req.specifier}: run `make lock`"
    assert pins["torch"].endswith("+cpu"), "the lock must name the CPU build of torch"


@pytest.mark.parametrize("name", [*FILES, "no-deps.txt"])
def test_every_pin_of_a_lock_file_has_a_hash(name):
    blocks = (LOCK / name).read_text().split("\n")
    for i, line in enumerate(blocks):
        if line and line[0] not in " #-":
            following = blocks[i + 1] if i + 1 < len(blocks) else ""
            assert line.endswith("\\") and "--hash=sha256:" in following, f"{name}: {line!r} has no hash"


def test_the_lock_files_agree_on_every_shared_package():
    pins = {name: locked(LOCK / name) for name in (*FILES, "no-deps.txt")}
    for a in pins:
        for b in pins:
            differ = {n: (pins[a][n], pins[b][n]) for n in set(pins[a]) & set(pins[b]) if pins[a][n] != pins[b][n]}
            assert not differ, f"{a} and {b} pin different versions: {differ}"
    assert all(set(pins["base.txt"]) < set(pins[name]) for name in ("test.txt", "widgets.txt", "book.txt"))


def test_environment_yml_installs_the_lock_with_its_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = python_of_lock(LOCK / "base.txt")
    assert {python_of_lock(LOCK / n) for n in FILES} == {python}
    assert f">={python}" == PYPROJECT["requires-python"]  # the lock is made with the oldest Python supported
    assert env["dependencies"] == [f"python={python}", "pip", {"pip": ["-r requirements/test.txt",
                                                                        "-r requirements/widgets.txt"]}]
    head = (ROOT / "environment.yml").read_text().split("\nname:")[0]
    assert "pip install --no-deps --require-hashes -r requirements/no-deps.txt" in head
    assert "pip install --no-deps -e ." in head


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_install_installs_from_the_lock():
    env = {**os.environ, "MAKEFLAGS": ""}
    run = subprocess.run(["make", "-n", "-B", "-C", str(ROOT), "install", "VENV=/nonexistent-venv"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "pip install -q --require-hashes -r requirements/base.txt" in run.stdout
    assert "--no-deps --require-hashes -r requirements/no-deps.txt" in run.stdout
    assert "pip install -q --no-deps -e ." in run.stdout  # the project itself adds nothing unlocked


def test_lock_drift_names_every_difference(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# a header\npytest==0.0.1 \\\n    --hash=sha256:00\n    # via x\n"
                    f"packaging=={installed('packaging')} \\\n    --hash=sha256:00\n"
                    "no-such-distribution==1.0 \\\n    --hash=sha256:00\n"
                    "pywin32==306 ; sys_platform == 'win32' \\\n    --hash=sha256:00\n")
    assert locked(lock) == {"pytest": "0.0.1", "packaging": installed("packaging"), "no-such-distribution": "1.0"}
    assert lock_drift([lock]) == ["no-such-distribution: installed nothing, locked 1.0 (lock.txt)",
                                  f"pytest: installed {installed('pytest')}, locked 0.0.1 (lock.txt)"]
    assert lock_drift([lock], required=False) == [f"pytest: installed {installed('pytest')}, locked 0.0.1 (lock.txt)"]
    (tmp_path / "loose.txt").write_text("numpy>=2\n")
    with pytest.raises(ValueError, match=r"loose.txt, line 1: 'numpy>=2' is not pinned"):
        locked(tmp_path / "loose.txt")


@pytest.mark.skipif(os.environ.get("LLMREC_UNLOCKED") == "1", reason="LLMREC_UNLOCKED=1: an environment of one's own")
def test_the_installed_versions_are_the_locked_ones():
    """`make install` + `make test` install base, test and no-deps; widgets.txt's and book.txt's packages only
    when installed."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    drift = lock_drift([LOCK / "base.txt", LOCK / "test.txt", LOCK / "no-deps.txt"])
    drift += lock_drift([LOCK / "widgets.txt", LOCK / "book.txt"], required=False)
    if python != python_of_lock(LOCK / "base.txt"):
        drift.insert(0, f"python: running {python}, locked {python_of_lock(LOCK / 'base.txt')}")
    assert not drift, ("this environment differs from the lock (make install puts it right; LLMREC_UNLOCKED=1 "
                       "skips this test in an environment of your own):\n  " + "\n  ".join(drift))
