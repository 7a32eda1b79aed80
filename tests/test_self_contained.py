"""The repository is self-contained: nothing it tracks reads a path outside its root.

A user's clone has no sibling folders (the project's shared notes live outside the repository), so every
file that the package, the tests, the scripts or CI read must be inside the repository.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
_PARENTS = re.compile(r"Path\(__file__\)\.resolve\(\)\.parents\[(\d+)\]")
_RELATIVE = re.compile(r"""(?<=["'\s=])((?:\.\./)+[\w.\-/]*)""")
_OUTSIDE_NAMES = re.compile(r"""["'/]shared["'/]|/work/|/home/\w+|\.\./shared""")
_TEXT_SUFFIXES = {".py", ".sh", ".toml", ".cfg", ".ini", ".yaml", ".yml", ".txt", ".json", ""}


def _tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, text=True
    ).stdout.split("\0")
    return [REPO_ROOT / name for name in listed if name and (REPO_ROOT / name).is_file()]


def _code_files() -> list[Path]:
    return [p for p in _tracked_files() if p.suffix in _TEXT_SUFFIXES and "data" not in p.relative_to(REPO_ROOT).parts]


def test_no_tracked_file_points_outside_the_repository() -> None:
    problems = []
    files = _code_files()
    assert any(p.name == "conftest.py" for p in files) and any(p.suffix == ".sh" for p in files)
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{path.relative_to(REPO_ROOT)}:{number}"
            for match in _PARENTS.finditer(line):
                target = path.resolve().parents[int(match.group(1))]
                if not target.is_relative_to(REPO_ROOT):
                    problems.append(f"{where}: {match.group(0)} is {target}, outside the repository")
            for match in _RELATIVE.finditer(line):
                target = (path.parent / match.group(1)).resolve()
                if not target.is_relative_to(REPO_ROOT):
                    problems.append(f"{where}: {match.group(1)!r} leads to {target}, outside the repository")
            if _OUTSIDE_NAMES.search(line) and path.name != Path(__file__).name:
                problems.append(f"{where}: names a folder outside the repository: {line.strip()[:100]}")
    assert not problems, "\n".join(problems)


def test_the_reference_data_is_in_the_repository_with_its_notice() -> None:
    data = REPO_ROOT / "tests" / "data"
    notice = (data / "NOTICE").read_text(encoding="utf-8")
    for path in sorted(p for p in data.rglob("*") if p.is_file() and p.name != "NOTICE"):
        relative = path.relative_to(data).as_posix()
        assert relative in notice, f"tests/data/NOTICE does not name the source and licence of {relative}"
    assert "Apache License, Version 2.0" in notice


def test_no_text_points_to_the_projects_notes_outside_the_repository() -> None:
    """Prose too (Markdown, docstrings): a reader of a clone cannot follow a pointer to the shared notes."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    shared = "shared"  # assembled here, so that this file, which states the rule, does not itself match it
    needles = (f"{shared} folder", "DESIGN.md", f"{shared}/data/", f"../{shared}")
    bad = []
    for name in files:
        path = REPO_ROOT / name
        if path.suffix not in {".py", ".md", ".toml", ".sh", ".txt"} or not path.is_file():
            continue
        if name == "tests/test_self_contained.py":
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        bad += [f"{name}: {needle!r}" for needle in needles if needle in text]
    assert not bad, f"text that refers to a file outside the repository (a clone does not have it): {bad}"
