"""A Griffe extension for the API reference (mkdocs.yml): the package's docstrings are written in
reStructuredText's inline style, rendered here as Markdown.

* ``:func:`~landscape.viz.report.load_results``` (and ``:class:``, ``:meth:``, ``:mod:``,
  ``:attr:``, ``:data:``, ``:exc:``, ``:obj:``) becomes an optional cross-reference: a link where
  the target is in the reference, plain code where it is not (no warning either way, so a role
  naming an undocumented object never fails ``mkdocs build --strict``). ``~`` shows the last
  name only, as in Sphinx; a name relative to the module (``.settings``, ``load_results``) is
  looked up in the object's module.
* A paragraph ending in ``::`` (reStructuredText's "a literal block follows") ends in ``:``; the
  indented block after it is a Markdown code block already.

Loaded by path (``extensions: [docs/griffe_roles.py]``); not part of the package, not copied to
the site (``exclude_docs``).
"""
from __future__ import annotations

import html
import re

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj|const):`(~?)([^`<>]+?)(?:\s*<([^`>]+)>)?`")
_LITERAL_INTRO = re.compile(r"(?<=\S)::[ \t]*$", re.M)
_BARE_INTRO = re.compile(r"^[ \t]*::[ \t]*$", re.M)


def _identifier(target: str, obj: griffe.Object) -> str:
    """The full dotted path of a role's target, seen from ``obj``."""
    target = target.strip().rstrip("()")
    module = obj.module if not obj.is_module else obj
    if target.startswith("."):
        package = module.path if module.is_package else module.path.rpartition(".")[0]
        return f"{package}{target}" if target != "." else package
    if "." not in target:
        return f"{module.path}.{target}"
    return target


def _role_to_autoref(obj: griffe.Object):
    def replace(m: re.Match) -> str:
        tilde, text, explicit = m.group(1), m.group(2).strip(), m.group(3)
        target = explicit or text
        shown = text if explicit else (target.rsplit(".", 1)[-1] if tilde else target.lstrip("."))
        ident = _identifier(target, obj)
        return (f'<autoref identifier="{html.escape(ident, quote=True)}" optional>'
                f"<code>{html.escape(shown)}</code></autoref>")
    return replace


def markdown_docstring(text: str, obj: griffe.Object) -> str:
    """``text`` with its reStructuredText roles and literal-block markers as Markdown (module docstring)."""
    text = _ROLE.sub(_role_to_autoref(obj), text)
    text = _BARE_INTRO.sub("", text)
    return _LITERAL_INTRO.sub(":", text)


class RstRoles(griffe.Extension):
    """Rewrites every docstring as it is loaded (:func:`markdown_docstring`)."""

    def on_instance(self, *, node, obj: griffe.Object, agent, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value, obj)
