"""The standalone export's resource inlining (no dashboard runs needed)."""

from __future__ import annotations

import base64
import re

from panel.io.resources import CDN_DIST

from app.dashboard.export import standalone

_MODULE = re.compile(r'src="data:(?:text|application)/javascript;base64,([^"]+)"')
_RELATIVE = re.compile(r"""\b(?:from|import)\s*\(?\s*["']\.{1,2}/""")


def test_a_modules_relative_imports_are_inlined() -> None:
    """The Fast design's script imports its components by a relative path, which a module
    loaded from a data: URL cannot resolve (the exported page stayed blank offline)."""
    page = f'<script type="module" src="{CDN_DIST}bundled/fast/js/fast_design.js"></script>'
    out = standalone(page)
    assert "https://" not in out
    found = _MODULE.search(out)
    assert found is not None
    script = base64.b64decode(found.group(1)).decode("utf-8")
    assert "provideFASTDesignSystem" in script and not _RELATIVE.search(script)
    inner = re.search(r"""from\s*["']data:[\w/]+;base64,([^"']+)["']""", script)
    assert inner is not None
    assert "provideFASTDesignSystem" in base64.b64decode(inner.group(1)).decode("utf-8")


def test_files_outside_panel_are_left_alone() -> None:
    page = f'<script src="{CDN_DIST}../../../etc/passwd"></script><link href="{CDN_DIST}nope.css">'
    assert standalone(page) == page
