"""The documentation site's structure: every page in mkdocs.yml's nav exists, every page is in the nav, the
README's links point at files in the repository (and it stays under 12 KB), the generated pages keep their
markers."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [page for value in node.values() for page in nav_pages(value)]
    return [page for item in node for page in nav_pages(item)]


def test_nav_and_pages_agree():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = nav_pages(config["nav"])
    assert len(listed) == len(set(listed)), "a page is listed twice"
    missing = [page for page in listed if not (DOCS / page).is_file()]
    assert not missing, f"in the nav but not in docs/: {missing}"
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert not pages - set(listed), f"in docs/ but not in the nav: {sorted(pages - set(listed))}"


def test_readme_links_stay_in_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert targets
    for target in targets:
        assert not target.startswith(("http:", "https:", "/", "..")), target
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
    assert len(readme.encode("utf-8")) <= 12 * 1024, "the README stays short; the reference lives in docs/"


def test_generated_pages_keep_their_markers():
    """The objectives, algorithms and config pages are filled by docs/_hooks/generated.py at build time."""
    for page, marker in [("objectives.md", "objectives"), ("config.md", "config"), ("algorithms.md", "algorithms")]:
        assert f"<!-- generated: {marker} -->" in (DOCS / page).read_text(encoding="utf-8"), page
