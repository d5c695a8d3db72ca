"""The README stays a short front page, its commands are the ones CI runs, and its links resolve.

The reference lives in docs/ (a MkDocs site, mkdocs.yml) and the dated history in CHANGELOG.md;
these checks keep the README from growing back into a lab diary. Pure text checks: no imports of
the package, milliseconds.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"
MAX_README_LINES = 150

#: Fenced code blocks: ```lang ... ```.
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
#: Inline links and images, [text](target) and ![alt](target), with an optional "title".
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
#: An ISO date such as 2026-12-03: the mark of a dated diary entry.
_DATE = re.compile(r"\b(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _without_code(text: str) -> str:
    """The text with fenced blocks and inline code removed (links inside code are not links)."""
    text = _FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def _bash_commands(text: str) -> list[str]:
    return [body.strip() for lang, body in _FENCE.findall(text) if lang in ("bash", "sh", "shell")]


def _relative_targets(text: str) -> list[str]:
    out = []
    for target in _LINK.findall(_without_code(text)):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "//")):
            continue   # http:, https:, mailto:, an anchor in the same page
        out.append(target.split("#", 1)[0])
    return out


def _broken_links(path: Path) -> list[str]:
    return [t for t in _relative_targets(_text(path)) if t and not (path.parent / t).exists()]


def test_readme_is_short():
    n = len(_text(README).splitlines())
    assert n <= MAX_README_LINES, (f"README.md has {n} lines (at most {MAX_README_LINES}): move reference "
                                   "material to docs/ and dated history to CHANGELOG.md")


def test_readme_has_no_dated_lines():
    dated = [f"{i}: {line}" for i, line in enumerate(_text(README).splitlines(), 1) if _DATE.search(line)]
    assert not dated, "README.md carries dated entries (history belongs in CHANGELOG.md):\n" + "\n".join(dated)


def test_readme_commands_are_the_ones_ci_runs():
    cmds = _bash_commands(_text(README))
    assert len(cmds) == 2, f"README.md should hold exactly two bash commands (run, test), found {len(cmds)}: {cmds}"
    assert all("\n" not in c for c in cmds), "each README command is one line, copied verbatim by users and CI"
    run_cmd, test_cmd = cmds
    assert test_cmd.endswith("python -m pytest"), test_cmd
    assert run_cmd.endswith("landscape run"), run_cmd
    ci_lines = [line.strip() for line in _text(CI).splitlines()]
    assert test_cmd in ci_lines, ".ci/run must run the README's test command verbatim:\n" + test_cmd
    # the run command sets up exactly as the tested command does, without the test extra
    assert run_cmd == test_cmd.replace('-e ".[test]" && python -m pytest', "-e . && landscape run"), (run_cmd, test_cmd)


def test_readme_links_resolve():
    assert _relative_targets(_text(README)), "README.md links to no page (docs/ is its reference)"
    assert not _broken_links(README), f"README.md links to missing files: {_broken_links(README)}"


def test_docs_links_resolve():
    pages = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "CHANGELOG.md"]
    broken = {p.name: b for p in pages if p.is_file() and (b := _broken_links(p))}
    assert not broken, f"pages link to missing files: {broken}"


def test_mkdocs_nav_lists_existing_pages():
    config = _text(ROOT / "mkdocs.yml")
    nav = re.findall(r"^\s*-\s*[^:\n]+:\s*(\S+\.md)\s*$", config, re.M)
    assert "index.md" in nav
    assert all((ROOT / "docs" / page).is_file() for page in nav), nav
    missing = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name not in nav)
    assert not missing, f"docs pages not in mkdocs.yml's nav: {missing}"


def _exports() -> dict[str, str]:
    """``landscape``'s public names → the module each is loaded from (its ``_EXPORTS`` table, read
    from the source: no import)."""
    import ast

    tree = ast.parse(_text(ROOT / "landscape" / "__init__.py"))
    table = next(node.value for node in tree.body
                 if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["_EXPORTS"])
    out: dict[str, str] = {}
    for key, value in zip(table.keys, table.values):
        if key is None:   # **{name: module for name in (...)}
            comp = value
            names = [e.value for e in comp.generators[0].iter.elts]
            out.update(dict.fromkeys(names, comp.value.value))
        else:
            out[key.value] = value.value
    return out


def test_every_public_name_is_in_the_api_reference():
    """Each name ``from landscape import …`` offers is rendered on a page of docs/api/ (a ``:::``
    directive naming it in its module, or the module itself for ``theory`` and ``figures``)."""
    directives = [d for page in sorted((ROOT / "docs" / "api").glob("*.md"))
                  for d in re.findall(r"^:::\s*(\S+)\s*$", _text(page), re.M)]
    exports = _exports()
    assert len(exports) > 30 and exports["load_results"] == "landscape.viz.report"
    missing = sorted(name for name, home in exports.items()
                     if not any(d == home and home.endswith(f".{name}")
                                or d.startswith(f"{home}.") and d.endswith(f".{name}") for d in directives))
    assert not missing, f"public names not in the API reference (docs/api/*.md): {missing}"


def test_api_pages_are_in_the_nav():
    nav = re.findall(r"^\s*-\s*[^:\n]+:\s*(\S+\.md)\s*$", _text(ROOT / "mkdocs.yml"), re.M)
    pages = sorted(f"api/{p.name}" for p in (ROOT / "docs" / "api").glob("*.md"))
    assert pages and set(pages) <= set(nav), sorted(set(pages) - set(nav))


def test_mkdocs_build_strict(tmp_path):
    """Where MkDocs is installed (the docs extra), the site builds with every link and anchor
    resolved and the API reference generated from the docstrings without a warning."""
    pytest.importorskip("mkdocs", reason="MkDocs is not installed (pip install mkdocs)")
    pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings is not installed (pip install -e '.[docs]')")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f",
                           str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
