"""scripts/check_built_layers.py, the check `make sam` runs over `sam build`'s output, finds what would
break in Lambda: native code for the wrong machine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from scripts import check_built_layers as check

pytestmark = pytest.mark.unit

BUILT_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Architectures: [arm64]
Resources:
  FanoutLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: FanoutLayer
      CompatibleArchitectures: [arm64]
    Metadata:
      BuildArchitecture: arm64
  SenderFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: SenderFunction
      Handler: app.handler
"""


def _elf(machine: int) -> bytes:
    """The first bytes of a little-endian 64-bit ELF shared object for `machine`."""
    return (
        b"\x7fELF"
        + bytes([2, 1, 1, 0])
        + bytes(8)
        + (3).to_bytes(2, "little")
        + machine.to_bytes(2, "little")
    )


@pytest.fixture
def build(tmp_path: Path) -> Path:
    """A `sam build` output with one arm64 layer and one function; returns its template."""
    (tmp_path / "template.yaml").write_text(BUILT_TEMPLATE)
    layer = tmp_path / "FanoutLayer" / "python" / "pydantic_core"
    layer.mkdir(parents=True)
    (layer / "_pydantic_core.cpython-312-aarch64-linux-gnu.so").write_bytes(_elf(183) + bytes(64))
    (layer / "core_schema.py").write_text("")
    (tmp_path / "SenderFunction").mkdir()
    (tmp_path / "SenderFunction" / "app.py").write_text("")
    return tmp_path / "template.yaml"


def test_an_arm64_build_passes(build: Path) -> None:
    assert check.problems_of(build) == []
    assert check.main(["check", str(build)]) == 0


def test_an_extension_built_for_this_machine_is_reported(build: Path) -> None:
    # A real extension module of the interpreter running the tests: built for x86_64 here.
    native = next(
        Path(str(spec.origin))
        for spec in map(importlib.util.find_spec, ("_json", "_struct", "math", "select"))
        if spec is not None and str(spec.origin).endswith(".so")
    )
    target = build.parent / "FanoutLayer" / "python" / "pydantic_core" / "_speedups.so"
    target.write_bytes(native.read_bytes())
    problems = check.problems_of(build)
    assert len(problems) == 1
    assert problems[0].startswith("FanoutLayer: python/pydantic_core/_speedups.so: ELF machine")
    assert check.main(["check", str(build)]) == 1


def test_a_shared_library_that_is_not_elf_is_reported(build: Path) -> None:
    (build.parent / "SenderFunction" / "libbroken.so.1").write_text("not a library")
    assert check.problems_of(build) == ["SenderFunction: libbroken.so.1: not an ELF file"]


def test_a_file_whose_name_only_contains_so_is_not_read(build: Path) -> None:
    (build.parent / "SenderFunction" / "notes.source.txt").write_text("text")
    assert check.problems_of(build) == []


def test_a_template_with_nothing_built_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(BUILT_TEMPLATE)
    assert check.problems_of(tmp_path / "template.yaml") == [
        f"{tmp_path / 'template.yaml'}: no built function or layer folder (run sam build first)"
    ]
