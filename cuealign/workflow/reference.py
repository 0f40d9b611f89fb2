"""docs/configuration.md, the configuration reference: every key of config.yaml with what it takes,
its default and its description, written from the schema (cuealign/schemas/config.schema.yaml),
the one place they are defined. ``python -m cuealign.workflow.reference`` rewrites it;
tests/unit/test_config.py fails when the committed file differs from what this makes."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from cuealign.workflow.config import _alternative, config_schema

TARGET = "docs/configuration.md"
HEADER = """# Configuration reference

Every key of `config.yaml`, generated from the schema (`cuealign/schemas/config.schema.yaml`) by
`python -m cuealign.workflow.reference`; do not edit (a test fails when this file and the schema
differ). A key left out takes its default; a misspelt key, or a value of the wrong kind, is an
error that names it before any job runs. `<name>` stands for a name you choose.
"""


def _resolve(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        node = {**schema["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _takes(node: dict[str, Any]) -> str:
    """What a key takes, in words."""
    if "oneOf" in node or "anyOf" in node:
        return " or ".join(_alternative(branch) for branch in node.get("oneOf", node.get("anyOf")))
    if "const" in node or "enum" in node:
        return _alternative(node)
    kind = node.get("type")
    if isinstance(kind, list):  # e.g. [string, "null"]
        return " or ".join("null" if k == "null" else _takes({**node, "type": k}) for k in kind)
    if kind == "array":
        items = node.get("items", {})
        return f"a list, each {_takes(items)}" if items else "a list"
    if kind == "object":
        return "a mapping"
    return _alternative(node) if kind else ""


def _text(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _default(node: dict[str, Any]) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return f"`{_text(shown)}`"


def rows(schema: dict[str, Any] | None = None) -> list[tuple[str, str, str, str]]:
    """(key, takes, default, description) for every key of the schema, depth first in its order."""
    schema = schema or config_schema()
    found: list[tuple[str, str, str, str]] = []

    def walk(node: dict[str, Any], path: str) -> None:
        node = _resolve(node, schema)
        if path:
            found.append((path, _takes(node), _default(node), _text(node.get("description", ""))))
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}" if path else key)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{path}.<name>")
        for branch in node.get("allOf", []):  # corpora: keys by type (if type is X then ...)
            if "if" in branch and "then" in branch:
                kind = branch["if"]["properties"]["type"]["const"]
                then = _resolve(branch["then"], schema)
                found.append((f"{path} (type: {kind})", "", "", _text(then.get("description", ""))))
                for key, child in then.get("properties", {}).items():
                    walk(child, f"{path}.{key}")

    walk(schema, "")
    return found


def reference(schema: dict[str, Any] | None = None) -> str:
    """The whole of docs/configuration.md."""
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    for row in rows(schema):
        sections.setdefault(re.split(r"[ .]", row[0], maxsplit=1)[0], []).append(row)
    parts = [HEADER]
    for top, entries in sections.items():
        parts.append(f"\n## {top}\n\n| key | takes | default | meaning |\n|---|---|---|---|")
        parts += [f"| `{key}` | {takes} | {default} | {meaning} |" for key, takes, default, meaning in entries]
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Rewrite docs/configuration.md from the config schema.")
    parser.add_argument("--repo", default=".", help="the checkout whose docs/ to write")
    path = Path(parser.parse_args().repo) / TARGET
    text = reference()
    changed = not path.exists() or path.read_text() != text
    path.write_text(text)
    print(f"{TARGET} updated" if changed else f"{TARGET} already matches the schema")


if __name__ == "__main__":
    main()
