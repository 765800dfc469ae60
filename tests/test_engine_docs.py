"""docs/engine.md lists every setting the engine has and every analyzer in the registry: a setting
added without its documented reason fails here."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from vigil.engine.registry import ANALYZERS
from vigil.engine.settings import Ranking, Settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "engine.md"


def _section(text: str, heading: str) -> str:
    m = re.search(rf"^## {re.escape(heading)}.*?(?=^## |\Z)", text, re.M | re.S)
    assert m, f"docs/engine.md has no '## {heading}' section"
    return m.group(0)


def test_every_setting_is_documented_with_its_value():
    settings = _section(DOC.read_text(), "Settings")
    missing = []
    for scope, cls in (("Settings", Settings), ("Ranking", Ranking)):
        for f in dataclasses.fields(cls):
            if f.name in ("ranking", "analyzers"):
                continue
            if not re.search(rf"`{f.name}`", settings):
                missing.append(f"{scope}.{f.name}")
    for a in ANALYZERS:
        for f in dataclasses.fields(a.Config):
            if not re.search(rf"`{a.name}\.{f.name}`", settings):
                missing.append(f"{a.name}.{f.name}")
    assert not missing, f"docs/engine.md's Settings section does not list: {', '.join(missing)}"


def test_every_analyzer_is_described():
    text = _section(DOC.read_text(), "Analyzers")
    assert not [a.name for a in ANALYZERS if f"`{a.name}`" not in text]
