"""Every setting is in the operations guide's table, and the table names no setting that is gone."""

from __future__ import annotations

import re
from pathlib import Path

from config.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    table = text[text.index("## Settings") :]
    documented = set(re.findall(r"`SWITCHBOARD_([A-Z0-9_]+)`", table))
    settings = {name.upper() for name in Settings.model_fields}
    assert settings - documented == set(), "settings missing from docs/operations.md"
    assert documented - settings == set(), "docs/operations.md lists settings that do not exist"
