"""scripts/expand_template.py hands checkov the template it can read: every destination's resources
written out, each with its checkov skip reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import expand_template

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_expanded_template_has_no_loop_left_and_every_destination_resource(tmp_path: Path) -> None:
    target = tmp_path / "out" / "template.json"
    assert expand_template.main(["expand", str(ROOT / "template.yaml"), str(target)]) == 0
    expanded = json.loads(target.read_text())
    assert not [
        key
        for section in expanded.values()
        if isinstance(section, dict)
        for key in section
        if "ForEach" in key
    ]
    assert "LanguageExtensions" not in json.dumps(expanded.get("Transform"))
    for logical in ("Mateo", "MateoMessage", "Symplify", "Workshop", "Altcraft"):
        skips = expanded["Resources"][f"{logical}SenderFunction"]["Metadata"]["checkov"]["skip"]
        assert {skip["id"] for skip in skips} == {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"}
        assert all(skip["comment"] for skip in skips)


def test_wrong_arguments_print_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert expand_template.main(["expand"]) == 2
    assert "Usage" in capsys.readouterr().err
