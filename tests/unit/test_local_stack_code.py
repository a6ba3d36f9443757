"""The local stack runs the code it deployed in this run, never a copy unpacked by an earlier run in the same
state folder (the benchmarks keep theirs in bench/out/stack-*): a change would otherwise not be measured."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from fanout_local.stack import LocalStack, StackSettings

pytestmark = pytest.mark.unit


class _Artifacts:
    """S3 holding one deployment package; counts the downloads."""

    def __init__(self, files: dict[str, str]) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, text in files.items():
                archive.writestr(name, text)
        self._zip = buffer.getvalue()
        self.downloads = 0

    def get_object(self, **request: Any) -> dict[str, Any]:
        self.downloads += 1
        return {"Body": io.BytesIO(self._zip)}


def test_code_unpacked_by_an_earlier_run_is_replaced_by_this_runs_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "code" / "SenderFunction"
    stale.mkdir(parents=True)
    (stale / "app.py").write_text("OLD = True\n")
    (stale / "gone.py").write_text("")
    stack = LocalStack(StackSettings(stack_name="t", state_dir=tmp_path))
    artifacts = _Artifacts({"app.py": "NEW = True\n"})
    monkeypatch.setattr(stack, "client", lambda service: artifacts)

    code = stack._code_dir("SenderFunction")
    again = stack._code_dir("SenderFunction")

    assert code == again == stale
    assert (code / "app.py").read_text() == "NEW = True\n"
    assert not (code / "gone.py").exists()
    assert artifacts.downloads == 1  # once per run, however often the code is asked for
