"""scripts/check_built_layers.py, the check `make sam` runs over `sam build`'s output, finds what would
break in Lambda: native code for the wrong machine, and an AWS SDK that is not one released set."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
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


# ------------------------------------------------------------------------------------------------
# The AWS SDK ships as one released set or not at all
# ------------------------------------------------------------------------------------------------

# What boto3 1.44.8 and s3transfer 0.19.3 declare, as their METADATA spells it.
BOTO3_REQUIRES = ["botocore (<1.45.0,>=1.44.8)", "jmespath (<2.0.0,>=0.7.1)", "s3transfer (<0.20.0,>=0.19.0)"]
BOTO3_CRT_EXTRA = "botocore[crt] (<2.0a0,>=1.21.0) ; extra == 'crt'"
S3TRANSFER_REQUIRES = ["botocore (<2.0a.0,>=1.37.4)", "botocore[crt] (<2.0a.0,>=1.37.4) ; extra == 'crt'"]


def _install(folder: Path, name: str, version: str, requires: Sequence[str] = ()) -> None:
    """A package as pip leaves it: name-version.dist-info/METADATA."""
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def _layer(build: Path) -> Path:
    return build.parent / "FanoutLayer" / "python"


def test_botocore_without_boto3_is_reported(build: Path) -> None:
    # What sam build shipped before boto3 joined the layer: aws-xray-sdk pulls botocore in alone.
    _install(_layer(build), "aws_xray_sdk", "2.15.0", ["wrapt", "botocore>=1.11.3"])
    _install(_layer(build), "botocore", "1.44.8")
    assert check.problems_of(build) == [
        "FanoutLayer: botocore 1.44.8 without boto3: the runtime's boto3 would run on it"
    ]
    assert check.main(["check", str(build)]) == 1


def test_a_matching_boto3_botocore_s3transfer_set_passes(build: Path) -> None:
    _install(_layer(build), "aws_xray_sdk", "2.15.0", ["wrapt", "botocore>=1.11.3"])
    _install(_layer(build), "boto3", "1.44.8", [*BOTO3_REQUIRES, BOTO3_CRT_EXTRA])
    _install(_layer(build), "botocore", "1.44.8")
    _install(_layer(build), "s3transfer", "0.19.3", S3TRANSFER_REQUIRES)
    assert check.problems_of(build) == []


def test_boto3_with_a_botocore_it_was_not_released_with_is_reported(build: Path) -> None:
    _install(_layer(build), "boto3", "1.44.8", BOTO3_REQUIRES)
    _install(_layer(build), "botocore", "1.43.2")
    _install(_layer(build), "s3transfer", "0.19.3", S3TRANSFER_REQUIRES)
    assert check.problems_of(build) == [
        "FanoutLayer: boto3 1.44.8 needs botocore<1.45.0,>=1.44.8, shipped: botocore 1.43.2"
    ]


def test_boto3_without_botocore_is_reported(build: Path) -> None:
    _install(_layer(build), "boto3", "1.44.8", BOTO3_REQUIRES)
    _install(_layer(build), "s3transfer", "0.19.3", S3TRANSFER_REQUIRES)
    problems = check.problems_of(build)
    assert problems == [
        "FanoutLayer: boto3 1.44.8 needs botocore<1.45.0,>=1.44.8, which is not shipped beside it",
        "FanoutLayer: s3transfer 0.19.3 needs botocore<2.0a.0,>=1.37.4, which is not shipped beside it",
    ]


def test_an_sdk_in_a_site_packages_folder_is_read_too(build: Path) -> None:
    site = build.parent / "FanoutLayer" / "python" / "lib" / "python3.12" / "site-packages"
    _install(site, "botocore", "1.44.8")
    assert check.problems_of(build) == [
        "FanoutLayer: botocore 1.44.8 without boto3: the runtime's boto3 would run on it"
    ]
