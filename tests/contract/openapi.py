"""GitHub's own description of the endpoints the App calls (tests/contract/github-openapi.json,
trimmed from `@octokit/openapi` by refresh_openapi.py), as checks a test can run on a request
the App sent and on the answer the fake GitHub gave."""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from jsonschema import Draft4Validator

DESCRIPTION = Path(__file__).with_name("github-openapi.json")
_BY_ID = re.compile(r"^/repositories/\d+")


@functools.cache
def description() -> dict[str, Any]:
    return json.loads(DESCRIPTION.read_text())


@functools.cache
def _components() -> dict[str, Any]:
    return _json_schema(description()["components"])


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: `nullable: true` becomes a null alternative."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        _, _, kind, name = node["$ref"].split("/", 3)
        node = description()["components"][kind][name]
    return node


def _pattern(template: str) -> re.Pattern[str]:
    regex = re.escape(template)
    regex = regex.replace(r"\{ref\}", ".+")  # a git ref may hold slashes (heads/feature/x)
    return re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", regex))


def operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """(documented path, operation) of a request; AssertionError when GitHub documents none.

    `/repositories/{id}/...` is GitHub's by-id alias of `/repos/{owner}/{repo}/...` (absent
    from the description); it is checked as the route it aliases.
    """
    path = _BY_ID.sub("/repos/owner/repo", path)
    for template, operations in description()["paths"].items():
        if _pattern(template).fullmatch(path) and method.lower() in operations:
            return template, operations[method.lower()]
    raise AssertionError(f"{method} {path}: GitHub documents no such operation")


def check_request(method: str, path: str, query: str, body: bytes) -> None:
    """The path, method, query parameters and JSON body are as GitHub documents them."""
    template, op = operation(method, path)
    declared = {}
    for parameter in op.get("parameters", []):
        parameter = _resolve(parameter)
        declared[(parameter["in"], parameter["name"])] = parameter
    for name, value in parse_qsl(query, keep_blank_values=True):
        parameter = declared.get(("query", name))
        assert parameter is not None, f"{method} {template}: undocumented query parameter {name}"
        schema = _json_schema(parameter.get("schema", {}))
        typed: Any = int(value) if schema.get("type") == "integer" else value
        _validate(typed, schema, f"{method} {template} ?{name}")
    request_body = op.get("requestBody")
    if not body:
        assert not (request_body or {}).get("required"), f"{method} {template}: body required"
        return
    assert request_body is not None, f"{method} {template}: GitHub documents no request body"
    schema = _resolve(request_body)["content"]["application/json"]["schema"]
    _validate(json.loads(body), _json_schema(schema), f"{method} {template} body")


def check_response(method: str, path: str, status: int, answer: bytes, content_type: str) -> None:
    """The answer is one GitHub documents for the operation (status and JSON schema). An error
    status the operation does not list must still have GitHub's error shape (basic-error)."""
    template, op = operation(method, path)
    documented = op["responses"].get(str(status))
    where = f"{method} {template} -> {status}"
    if documented is None and status == 304 and method == "GET":
        # GitHub's rule for every GET, documented once rather than per operation: a
        # conditional request whose ETag still matches is answered 304, without a body.
        assert not answer, f"{where}: a 304 has no body"
        return
    if documented is None:
        assert status >= 400, f"{where}: GitHub documents no such answer"
        error = description()["components"]["schemas"]["basic-error"]
        _validate(json.loads(answer), _json_schema(error), where)
        return
    content = _resolve(documented).get("content")
    if not content:
        return  # 302, 304, 202 without a body: nothing to validate but the status
    schema = content.get("application/json", {}).get("schema")
    assert schema is not None, f"{where}: documented as {sorted(content)}, not JSON"
    assert "json" in content_type, f"{where}: answered {content_type!r}"
    _validate(json.loads(answer), _json_schema(schema), where)


def example(name: str) -> Any:
    """A documented example value (components/examples), a deep copy to edit."""
    return copy.deepcopy(description()["components"]["examples"][name]["value"])


def _validate(instance: Any, schema: dict[str, Any], where: str) -> None:
    root = {**schema, "components": _components()}
    errors = sorted(Draft4Validator(root).iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        shown = "; ".join(f"{list(e.path)}: {e.message[:200]}" for e in errors[:5])
        raise AssertionError(f"{where}: {len(errors)} schema errors: {shown}")


@functools.cache
def _answer(method: str, template: str, status: int) -> tuple[Any, Any]:
    """(example, schema) GitHub documents for an answer."""
    operation_ = description()["paths"][template][method.lower()]
    documented = operation_["responses"].get(str(status))
    if documented is None:
        return None, None
    content = _resolve(documented).get("content", {}).get("application/json", {})
    example_ = content.get("example")
    for item in content.get("examples", {}).values():
        example_ = _resolve(item).get("value")
        break
    return example_, content.get("schema")


def with_documented_fields(method: str, path: str, status: int, data: Any) -> Any:
    """`data` with every field GitHub's description requires of this answer: the ones `data`
    lacks are taken from the documented example (lists of objects: from its first item)."""
    try:
        template, _ = operation(method, path)
    except AssertionError:
        return data
    example_, schema = _answer(method, template, status)
    return _over(example_, data, schema)


def _flatten(schema: Any) -> dict[str, Any]:
    """A schema's `required` and `properties`, through `$ref` and `allOf`."""
    if not isinstance(schema, dict):
        return {}
    schema = _resolve(schema)
    parts = [schema, *(_flatten(part) for part in schema.get("allOf", ()))]
    for key in ("anyOf", "oneOf"):  # fill as the first alternative (e.g. a user, not an org)
        if schema.get(key):
            parts.append(_flatten(schema[key][0]))
    return {
        **schema,
        "required": [key for part in parts for key in part.get("required", ())],
        "properties": {k: v for part in parts for k, v in part.get("properties", {}).items()},
    }


def _over(example_: Any, data: Any, schema: Any) -> Any:
    schema = _flatten(schema)
    if isinstance(data, dict) and isinstance(example_, dict):
        properties = schema.get("properties", {})
        merged = {
            key: copy.deepcopy(example_[key])
            for key in schema.get("required", ())
            if key in example_ and key not in data
        }
        for key, value in data.items():
            merged[key] = _over(example_.get(key), value, properties.get(key))
        return merged
    if isinstance(data, list) and isinstance(example_, list) and example_:
        base = example_[0] if isinstance(example_[0], dict) else None
        return [_over(base, item, schema.get("items")) for item in data]
    return data
