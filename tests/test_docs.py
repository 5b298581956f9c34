"""The documentation stays true: generated pages current, the site builds strictly, the README a front door.

The README is what a newcomer reads first, and its first two commands are the project's promise (`make demo`
renders, `make test` tests); everything longer lives in the MkDocs site under docs/. Two kinds of rot are caught
here, in a few seconds: the generated reference pages (docs/reference/cli.md, recipe.md) drifting from the code
they describe, and links, images or pages that no longer resolve. `mkdocs build --strict` with the validation
settings of mkdocs.yml fails on a link to a missing page, anchor or image and on a page left out of the nav.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 250


def test_generated_reference_pages_are_up_to_date():
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs_reference.py"), "--check"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{p.stdout}{p.stderr}\nrun: python scripts/gen_docs_reference.py (or make docs)"


def test_the_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is in the test extra: pip install -e '.[test]'")
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                        "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"mkdocs build --strict failed:\n{p.stdout}{p.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "cli.html").is_file()


def test_readme_is_a_short_front_door_that_starts_with_make_demo_and_make_test():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    head = "\n".join(lines[:8])
    assert re.search(r"^make demo\b", head, re.M) and re.search(r"^make test\b", head, re.M), head


def _targets(markdown: str) -> list[str]:
    """The targets of inline links and images, `[text](target)` / `![alt](target)`, outside fenced code blocks."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)


def test_every_relative_link_and_image_in_the_readme_exists():
    targets = _targets(README.read_text())
    assert any(t.startswith("docs/") for t in targets), "the README links into docs/"
    missing = []
    for t in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I) or t.startswith("#"):  # http:, mailto:, in-page anchors
            continue
        path = t.split("#", 1)[0].split("?", 1)[0]
        if not (ROOT / path).exists():
            missing.append(t)
    assert not missing, f"README.md links to missing files: {missing}"


def test_the_link_checker_sees_links_and_images():
    found = _targets("see [a](docs/a.md#x) and ![b](docs/img/b.png)\n```\n[c](not/a/link.md)\n```\n`[d](code.md)`")
    assert found == ["docs/a.md#x", "docs/img/b.png"]
