"""Checks what `sam build` put into each function and layer before it ships (`make sam` runs it).

- Every native extension (`*.so`) is built for the artifact's architecture (`arm64`: an aarch64 ELF),
  so a wheel for the build machine's own architecture never reaches Lambda.
- The AWS SDK ships whole or not at all: botocore never without boto3 (Lambda puts the layer before its
  own SDK on sys.path, so a lone botocore would run under the runtime's boto3, a pair never released
  together), and every requirement between boto3, botocore and s3transfer holds for the versions shipped.

Usage: check_built_layers.py .aws-sam/build/template.yaml   (exit 1 and one line per problem)
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from importlib.metadata import Distribution, distributions
from pathlib import Path
from typing import Any, Literal

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fanout_local import cfn_yaml
from fanout_local.sam_deploy_prep import expand_language_extensions

# Lambda's architectures -> the ELF e_machine of code built for them.
ELF_MACHINES: dict[str, int] = {"arm64": 183, "x86_64": 62}  # EM_AARCH64, EM_X86_64
ELF_MAGIC = b"\x7fELF"
SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")  # _x.cpython-312-aarch64-linux-gnu.so, libfoo.so.1.2


def elf_machine(path: Path) -> int | None:
    """The ELF e_machine of the file at `path`, or None when it is not an ELF file."""
    with path.open("rb") as file:
        header = file.read(20)
    if len(header) < 20 or header[:4] != ELF_MAGIC:
        return None
    byteorder: Literal["little", "big"] = "little" if header[5] == 1 else "big"
    return int.from_bytes(header[18:20], byteorder)


def foreign_extensions(artifact: Path, architecture: str) -> list[str]:
    """Native extensions under `artifact` that are not built for `architecture`."""
    wanted = ELF_MACHINES[architecture]
    problems: list[str] = []
    for path in sorted(artifact.rglob("*.so*")):
        if not path.is_file() or not SHARED_OBJECT.search(path.name):
            continue
        machine = elf_machine(path)
        if machine is None:
            problems.append(f"{path.relative_to(artifact)}: not an ELF file")
        elif machine != wanted:
            problems.append(
                f"{path.relative_to(artifact)}: ELF machine {machine}, {architecture} needs {wanted}"
            )
    return problems


# The AWS SDK for Python: the distributions that must come from one place, the layer or the runtime.
SDK = frozenset({"boto3", "botocore", "s3transfer"})


def shipped_distributions(artifact: Path) -> dict[str, Distribution]:
    """Canonical name -> distribution, for every package installed in a function or layer folder
    (a layer's packages sit in python/ or python/lib/python3.X/site-packages)."""
    folders = [artifact, artifact / "python", *sorted(artifact.glob("python/lib/python3*/site-packages"))]
    found = distributions(path=[str(folder) for folder in folders if folder.is_dir()])
    return {canonicalize_name(dist.metadata["Name"]): dist for dist in found}


def sdk_problems(artifact: Path) -> list[str]:
    """How the AWS SDK packages in `artifact` fail to make one released set (empty when none ship)."""
    shipped = shipped_distributions(artifact)
    if not SDK & shipped.keys():
        return []
    problems: list[str] = []
    if "botocore" in shipped and "boto3" not in shipped:
        problems.append(
            f"botocore {shipped['botocore'].version} without boto3: the runtime's boto3 would run on it"
        )
    for name, dist in sorted(shipped.items()):
        for line in dist.requires or []:
            requirement = Requirement(line)
            wanted = canonicalize_name(requirement.name)
            if wanted not in SDK or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
                continue
            have = shipped.get(wanted)
            if have is None:
                problems.append(f"{name} {dist.version} needs {requirement}, which is not shipped beside it")
            elif not requirement.specifier.contains(have.version, prereleases=True):
                problems.append(
                    f"{name} {dist.version} needs {requirement}, shipped: {wanted} {have.version}"
                )
    return problems


def built_artifacts(template_path: Path) -> Iterator[tuple[str, Path, str]]:
    """(logical id, build folder, architecture) for every function and layer that `sam build` built."""
    # The built template keeps template.yaml's Fn::ForEach loops; expanded, each function is its own.
    template: dict[str, Any] = expand_language_extensions(cfn_yaml.load_template(template_path))
    global_architectures = template.get("Globals", {}).get("Function", {}).get("Architectures", ["x86_64"])
    for name, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        metadata = resource.get("Metadata", {})
        if resource.get("Type") == "AWS::Serverless::LayerVersion":
            uri = properties.get("ContentUri")
            architectures = properties.get("CompatibleArchitectures", ["x86_64"])
        elif resource.get("Type") == "AWS::Serverless::Function":
            uri = properties.get("CodeUri")
            architectures = properties.get("Architectures", global_architectures)
        else:
            continue
        folder = template_path.parent / uri if isinstance(uri, str) else None
        if folder is not None and folder.is_dir():
            yield name, folder, str(metadata.get("BuildArchitecture", architectures[0]))


def problems_of(template_path: Path) -> list[str]:
    """Every problem in every artifact of the build whose template is at `template_path`."""
    problems: list[str] = []
    artifacts = list(built_artifacts(template_path))
    if not artifacts:
        return [f"{template_path}: no built function or layer folder (run sam build first)"]
    for name, folder, architecture in artifacts:
        problems.extend(f"{name}: {problem}" for problem in foreign_extensions(folder, architecture))
        problems.extend(f"{name}: {problem}" for problem in sdk_problems(folder))
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    problems = problems_of(Path(argv[1]))
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{argv[1]}: every built function and layer checked, no problem")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
