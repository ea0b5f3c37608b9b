"""The shipped example repository and the format reference stay in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

from promptrepo import files_from_directory, load_repository, resolve, validate
from promptrepo.diagnostics import CODES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
REFERENCE = ROOT / "docs" / "prompt-repository.md"


def test_examples_validate_with_no_errors_and_no_warnings_even_in_strict_mode() -> None:
    files = files_from_directory(EXAMPLES)
    assert validate(files, strict=True) == []


def test_examples_use_v2_front_matter_includes_conditions_and_yaml_prompts() -> None:
    repo = load_repository(files_from_directory(EXAMPLES))
    assert repo.schema_version == "v2"
    assert any(route.when for route in repo.routes)
    meeting = resolve(repo, {"category": "meeting"})
    assert meeting.file_path == "prompts/meeting/default.md"
    assert meeting.parameters["temperature"] == 0.2
    assert meeting.content.rstrip().endswith("{messages}")  # from partials/messages.md
    developer = resolve(repo, {"category": "meeting", "perspective": "developer"})
    assert developer.file_path.endswith(".yaml")


def test_reference_documents_every_diagnostic_code() -> None:
    rows = re.findall(
        r"^\| `([a-z0-9-]+)` \| (error|warning|notice)", REFERENCE.read_text(), re.MULTILINE
    )
    assert {code: severity for code, severity in rows} == {
        code: severity for code, (severity, _hint) in CODES.items()
    }
