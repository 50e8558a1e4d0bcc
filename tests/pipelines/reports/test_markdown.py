"""Markdown escaping of names: nothing from a model or config can break a table or become HTML."""

from __future__ import annotations

import pytest

from layerscope.pipelines.reports.markdown import code, md


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("conv0", "conv0"),
        ("a|b", "a\\|b"),
        ("<script>x</script>", "\\<script\\>x\\</script\\>"),
        ("*bold* _it_ `c`", "\\*bold\\* \\_it\\_ \\`c\\`"),
        ("[l](u)", "\\[l\\](u)"),
        ("two\nlines", "two lines"),
        ("back\\slash", "back\\\\slash"),
    ],
)
def test_md(name: str, escaped: str) -> None:
    assert md(name) == escaped


@pytest.mark.parametrize(
    ("value", "span"),
    [("plain", "`plain`"), ("a`b", "``a`b``"), ("`x", "`` `x ``"), ("a|b", "`a\\|b`"), ("x``y", "```x``y```")],
)
def test_code_span_cannot_be_closed_from_inside(value: str, span: str) -> None:
    assert code(value) == span
