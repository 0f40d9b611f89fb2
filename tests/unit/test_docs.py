"""The README is a page a newcomer reads in five minutes; the rest is under docs/. Every link and
figure in them points at something that exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks/README.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_the_readme_is_short_and_holds_the_commands():
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= 8 * 1024, f"README.md is {len(readme.encode())} bytes; move detail to docs/"
    for command in ('pip install -e ".[test]"', "snakemake --cores 2", "python -m pytest"):
        assert command in readme, command
    # every page under docs/ is reachable from the README
    linked = {Path(m).name for m in LINK.findall(readme) if m.startswith("docs/") and m.endswith(".md")}
    assert linked == {p.name for p in (REPO / "docs").glob("*.md")}


def test_every_link_and_figure_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+://", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, "links to nothing:\n" + "\n".join(broken)


def test_nothing_cites_a_file_outside_the_repository():
    """A user has only this repository: what the code and docs cite lives in it."""
    cited = []
    for path in [*PAGES, *REPO.glob("cuealign/**/*.py"), REPO / "config.yaml"]:
        text = path.read_text()
        for name in ("FINDINGS.md", "../shared", "PAPER.md", "DESIGN.md", "STYLE.md"):
            if name in text:
                cited.append(f"{path.relative_to(REPO)} cites {name}")
    assert not cited, "\n".join(cited)
