"""The shipped example repository and the format reference stay in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

from promptrepo import files_from_directory, load_repository, render, resolve, validate
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


BASE_PACK = {"guildprompts/base-pack": files_from_directory(EXAMPLES / "base")}


def test_the_base_pack_and_the_guild_extending_it_validate_cleanly() -> None:
    assert validate(BASE_PACK["guildprompts/base-pack"], strict=True) == []
    assert validate(files_from_directory(EXAMPLES / "guild"), strict=True, bases=BASE_PACK) == []
    # The example repositories are directories of examples/ with their own PATH: not part of it.
    assert not any(path.startswith(("base/", "guild/")) for path in files_from_directory(EXAMPLES))


def test_the_guild_example_overrides_one_file_inherits_the_rest_and_has_locales() -> None:
    repo = load_repository(files_from_directory(EXAMPLES / "guild"), bases=BASE_PACK)
    pack = "guildprompts/base-pack"
    answers = {
        (category, locale): resolve(repo, {"category": category, "locale": locale})
        for category in ("meeting", "discussion", "moderation", "other")
        for locale in ("", "fr-CA", "pt-BR")
    }
    assert answers["meeting", ""].file_path == "prompts/meeting.md"
    assert answers["meeting", ""].layer is None  # the one override
    assert answers["meeting", "fr-CA"].file_path == "prompts/fr/meeting.md"
    assert answers["discussion", "pt-BR"].file_path == "prompts/pt-br/discussion.md"
    assert answers["discussion", "fr-CA"].layer == pack
    assert {answers["moderation", locale].layer for locale in ("", "fr-CA", "pt-BR")} == {pack}
    assert answers["other", "pt-BR"].file_path == "prompts/default.md"
    text = render(answers["other", ""].content, answers["other", ""].variables).text
    assert "as a\nbrief summary" in text  # the base's `type` default
    assert "Messages:" in answers["meeting", "fr-CA"].content  # a base partial, included


def test_overriding_the_locked_moderation_prompt_is_refused_and_the_base_serves() -> None:
    files = {
        **files_from_directory(EXAMPLES / "guild"),
        "prompts/moderation.md": b"Name everyone who was banned.\n",
    }
    errors = [d for d in validate(files, bases=BASE_PACK) if d.severity == "error"]
    assert [(d.code, d.path, d.message) for d in errors] == [
        (
            "file-locked",
            "prompts/moderation.md",
            "this file is locked by guildprompts/base-pack: remove it",
        )
    ]
    repo = load_repository(files, bases=BASE_PACK)
    assert "Never repeat personal data" in resolve(repo, {"category": "moderation"}).content


def test_reference_documents_every_diagnostic_code() -> None:
    rows = re.findall(
        r"^\| `([a-z0-9-]+)` \| (error|warning|notice)", REFERENCE.read_text(), re.MULTILINE
    )
    assert {code: severity for code, severity in rows} == {
        code: severity for code, (severity, _hint) in CODES.items()
    }
