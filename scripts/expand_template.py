"""Writes template.yaml with its AWS::LanguageExtensions expanded, as JSON, for tools that read
CloudFormation but not Fn::ForEach (checkov parses the loop as an error and then checks nothing).

Usage: expand_template.py template.yaml build/template.expanded.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fanout_local import cfn_yaml
from fanout_local.sam_deploy_prep import expand_language_extensions


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    expanded = expand_language_extensions(cfn_yaml.load_template(argv[1]))
    target = Path(argv[2])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(expanded, indent=1) + "\n", encoding="utf-8")
    print(f"{target}: {len(expanded.get('Resources', {}))} resources")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
