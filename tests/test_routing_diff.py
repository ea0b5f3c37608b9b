"""The routing diff: what a change does to the guilds following a branch, computed purely, shown
by `guildprompts diff` on a git checkout, and in the check run of pull requests and pushes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from github_app.store import snapshots
from promptrepo import load_repository, resolve
from promptrepo.routing_diff import contexts_for, diff_files, render_markdown
from tests.harness import GUILD, OTHER_GUILD, Harness, harness
from tests.test_cli_format import run, write

BASE = {
    "PATH": b"version: v2\nroutes:\n"
    b'  channel: "prompts/{category}/channels/{channel}.md"\n'
    b'  by_category: "prompts/{category}/default.md"\n'
    b'  fallback: "prompts/default.md"\n'
    b"allowed_guilds: ['111111111111111111', '222222222222222222']\n",
    "schema-version": b"v2\n",
    "prompts/default.md": b"Summarise: {messages}\n",
    "prompts/meeting/default.md": b"---\nparameters: {temperature: 0.2}\n---\n"
    b"List the action items: {messages}\n",
}
MEETING_CHANGED = {
    **BASE,
    "prompts/meeting/default.md": b"---\nparameters: {temperature: 0.5}\n---\n"
    b"List the decisions and {owner}'s action items: {messages}\n",
}


def _contexts(change) -> set[str]:
    return {context.key for context in change.contexts}


# ---- pure ---------------------------------------------------------------------------------------


def test_nothing_changes_when_only_unrouted_bytes_change() -> None:
    same = diff_files(BASE, {**BASE, "README.md": b"docs", "PATH": BASE["PATH"] + b"# note\n"})
    assert not same.changed and same.contexts_compared > 0
    assert "**No change a guild would see**" in render_markdown(same)


def test_a_changed_prompt_reports_its_contexts_text_parameters_and_placeholders() -> None:
    result = diff_files(BASE, MEETING_CHANGED)
    [change] = result.changes
    assert change.base == change.head == "prompts/meeting/default.md"
    assert "category=meeting&type=brief" in _contexts(change)
    assert all(key.startswith("category=meeting") for key in _contexts(change))
    assert "-List the action items: {messages}" in change.diff
    assert "+List the decisions and {owner}'s action items: {messages}" in change.diff
    assert change.parameters == {"temperature": (0.2, 0.5)}
    assert change.new_unresolved == ("owner",), "{messages} is the bot's, not newly unresolved"


def test_a_channel_with_its_own_file_in_head_moves_to_that_file() -> None:
    head = {**BASE, "prompts/discussion/channels/releases.md": b"Release notes: {messages}\n"}
    result = diff_files(BASE, head)
    [moved] = result.moved
    assert (moved.base, moved.head) == ("prompts/default.md", head_path := moved.head)
    assert head_path == "prompts/discussion/channels/releases.md"
    assert _contexts(moved) == {"category=discussion&channel=releases"}
    # ... and the same channel file deleted again moves it back (base has it, head does not).
    back = diff_files(head, BASE)
    assert [(c.base, c.head) for c in back.moved] == [(head_path, "prompts/default.md")]


def test_a_deleted_category_file_falls_back_to_the_global_prompt() -> None:
    head = {k: v for k, v in BASE.items() if k != "prompts/meeting/default.md"}
    [change] = diff_files(BASE, head).changes
    assert (change.base, change.head) == ("prompts/meeting/default.md", "prompts/default.md")
    assert change.parameters == {"temperature": (0.2, None)}


def test_no_base_compares_with_the_built_in_prompts_and_a_broken_head_says_so() -> None:
    first = diff_files(None, BASE)
    assert any(c.base.startswith("(built-in") for c in first.changes)
    broken = diff_files(BASE, {**BASE, "PATH": b"routes: [\n"})
    assert broken.head_error and broken.changed
    assert "head cannot be used" in render_markdown(broken)


def test_markdown_folds_diffs_and_fits_its_budget() -> None:
    big = {
        **BASE,
        **{
            f"prompts/c{i}/default.md": ("\n".join(f"line {j}" for j in range(400))).encode()
            for i in range(30)
        },
    }
    changed = {path: data.replace(b"line", b"LINE") for path, data in big.items()}
    result = diff_files(big, changed)
    assert len(result.changes) == 30
    text = render_markdown(result, budget=20_000, followers=3)
    assert len(text) <= 20_000
    assert 0 < text.count("<details>") < 30 and "not shown to fit GitHub's limit" in text
    assert "(diff cut)" in text, "one file's diff is cut at DIFF_LINES"
    assert "3 guilds follow the base branch" in text


# ---- the command line, on a real git checkout --------------------------------------------------


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.email", "t@example.com")
    _git(root, "config", "user.name", "t")
    write(root, BASE)
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "base")
    return root


def test_cli_diff_working_tree_and_two_commits(checkout: Path) -> None:
    unchanged = run("diff", checkout, "--base", "HEAD")
    assert unchanged.returncode == 0 and "No change a guild would see" in unchanged.stdout
    write(checkout, MEETING_CHANGED)
    text = run("diff", checkout, "--base", "HEAD")
    assert text.returncode == 0, text.stderr
    assert "prompts/meeting/default.md" in text.stdout and "parameter temperature" in text.stdout
    _git(checkout, "commit", "-qam", "meeting")
    as_json = json.loads(
        run("diff", checkout, "--base", "HEAD~1", "--head", "HEAD", "--format", "json").stdout
    )
    assert as_json["changed"] and as_json["changes"][0]["new_unresolved"] == ["owner"]
    github = run("diff", checkout, "--base", "HEAD~1", "--head", "HEAD", "--format", "github")
    assert "<details><summary>prompts/meeting/default.md" in github.stdout
    reverse = run("diff", checkout, "--base", "HEAD", "--head", "HEAD~1", "--format", "json")
    assert json.loads(reverse.stdout)["changes"][0]["parameters"] == {"temperature": [0.5, 0.2]}


def test_cli_diff_of_a_layered_repository_reads_both_commits_over_the_bases(
    tmp_path: Path,
) -> None:
    examples = Path(__file__).resolve().parent.parent / "examples"
    root = tmp_path / "guild"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.email", "t@example.com")
    _git(root, "config", "user.name", "t")
    for path in (examples / "guild").rglob("*"):
        if path.is_file():
            target = root / path.relative_to(examples / "guild")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "guild")
    layer = f"guildprompts/base-pack={examples / 'base'}"
    (root / "prompts" / "meeting.md").unlink()  # the base's meeting prompt serves again
    text = run("diff", root, "--base", "HEAD", "--layer", layer, "--format", "json")
    assert text.returncode == 0, text.stderr
    result = json.loads(text.stdout)
    assert result["changed"] and result["base_error"] is None and result["head_error"] is None
    assert any(change["base"] == "prompts/meeting.md" for change in result["changes"])
    without = json.loads(run("diff", root, "--base", "HEAD", "--format", "json").stdout)
    assert without["head_error"], "without the base the repository cannot be read"


def test_cli_diff_of_a_subdirectory_and_bad_refs(checkout: Path) -> None:
    sub = checkout / "prompts-repo"
    write(sub, BASE)
    _git(checkout, "add", "-A")
    _git(checkout, "commit", "-qm", "copy")
    assert "No change" in run("diff", sub, "--base", "HEAD").stdout
    bad = run("diff", checkout, "--base", "no-such-ref")
    assert bad.returncode == 2 and "guildprompts diff:" in bad.stderr
    assert run("diff", checkout.parent, "--base", "HEAD").returncode == 2  # not a checkout


# ---- the check run, through the fake GitHub ----------------------------------------------------


@pytest.fixture
async def world(sqlite_url: str) -> AsyncIterator[Harness]:
    async with harness(sqlite_url) as world:
        yield world


async def _live_on_main(world: Harness) -> str:
    world.bind(GUILD)
    world.bind(OTHER_GUILD)
    sha = await world.push(BASE)
    await world.drain()
    assert world.state(GUILD).commit_sha == sha
    return sha


@pytest.mark.anyio
async def test_a_pull_request_changing_the_meeting_prompt_shows_its_effect(world: Harness) -> None:
    await _live_on_main(world)
    head = world.fake.push(world.full_name, "feature", MEETING_CHANGED)
    await world.deliver("pull_request", world.fake.pull_request_payload(world.full_name, "feature"))
    await world.drain()
    [check] = world.check_runs(head)
    summary = check["output"]["summary"]
    assert check["conclusion"] == "success"
    assert "### What guilds would see" in summary
    assert "2 guilds follow the base branch" in summary
    assert "`category=meeting, type=brief`" in summary
    assert "prompts/meeting/default.md" in summary and "temperature: 0.2 → 0.5" in summary
    assert "+List the decisions" in summary
    assert GUILD not in summary and OTHER_GUILD not in summary
    assert world.state(GUILD).commit_sha != head, "a pull request never goes live"


@pytest.mark.anyio
async def test_a_pull_request_with_no_effect_says_so(world: Harness) -> None:
    await _live_on_main(world)
    head = world.fake.push(world.full_name, "docs", {"README.md": b"More docs\n"})
    await world.deliver("pull_request", world.fake.pull_request_payload(world.full_name, "docs"))
    await world.drain()
    [check] = world.check_runs(head)
    assert "**No change a guild would see**" in check["output"]["summary"]


@pytest.mark.anyio
async def test_a_push_compares_with_before_and_reads_a_missing_base_once(world: Harness) -> None:
    base = await _live_on_main(world)
    pushed = await world.push(
        {"prompts/meeting/default.md": MEETING_CHANGED["prompts/meeting/default.md"]}
    )
    await world.drain()
    [check] = world.check_runs(pushed)
    assert f"main at `{base[:7]}`" in check["output"]["summary"]
    assert "temperature: 0.2 → 0.5" in check["output"]["summary"]
    # A pull request whose base was never synced: read through the sync's content path.
    unseen = world.fake.push(world.full_name, "release", {"prompts/default.md": b"R {messages}\n"})
    head = world.fake.push(world.full_name, "topic", {"prompts/default.md": b"T {messages}\n"})
    payload = world.fake.pull_request_payload(world.full_name, "topic", base_branch="release")
    assert payload["pull_request"]["base"]["sha"] == unseen
    await world.deliver("pull_request", payload)
    await world.drain()
    [check] = world.check_runs(head)
    summary = check["output"]["summary"]
    assert "0 guilds follow the base branch" in summary and f"release at `{unseen[:7]}`" in summary
    assert "-R {messages}" in summary and "+T {messages}" in summary
    assert world.db(snapshots.find_snapshot, world.repository_id, unseen) is not None, "stored"


@pytest.mark.anyio
async def test_an_unreadable_base_leaves_the_check_without_a_diff(world: Harness) -> None:
    await _live_on_main(world)
    head = world.fake.push(world.full_name, "feature", MEETING_CHANGED)
    payload = world.fake.pull_request_payload(world.full_name, "feature")
    payload["pull_request"]["base"]["sha"] = "f" * 40  # force-pushed away
    await world.deliver("pull_request", payload)
    await world.drain()
    [check] = world.check_runs(head)
    assert check["conclusion"] == "success"
    assert f"The base commit {'f' * 7} could not be read" in check["output"]["summary"]
    assert world.state(GUILD).commit_sha is not None, "no access problem recorded"


@pytest.mark.anyio
async def test_a_check_suite_of_a_pull_request_compares_with_its_base(world: Harness) -> None:
    base = await _live_on_main(world)
    head = world.fake.push(world.full_name, "feature", MEETING_CHANGED)
    suite = world.fake.check_suite_payload(world.full_name, "feature")
    suite["check_suite"]["pull_requests"] = [
        {"number": 3, "head": {"ref": "feature", "sha": head}, "base": {"ref": "main", "sha": base}}
    ]
    await world.deliver("check_suite", suite)
    await world.drain()
    [check] = world.check_runs(head)
    summary = check["output"]["summary"]
    assert f"Compared with main at `{base[:7]}`" in summary
    assert "2 guilds follow the base branch" in summary and "temperature: 0.2 → 0.5" in summary


# ---- properties: the diff is exactly "some context gets something else" ----------------------

_NAMES = st.sampled_from(["meeting", "discussion", "support"])
_FILES = st.dictionaries(
    st.tuples(_NAMES, st.sampled_from(["default", "brief", "channels/ops"])),
    st.tuples(st.sampled_from(["A", "B", "C {owner}"]), st.sampled_from([None, 0.2, 0.7])),
    max_size=6,
)


def _repository(layout: dict) -> dict[str, bytes]:
    files = dict(BASE)
    for (category, name), (text, temperature) in layout.items():
        front = f"---\nparameters: {{temperature: {temperature}}}\n---\n" if temperature else ""
        files[f"prompts/{category}/{name}.md"] = f"{front}{text} {{messages}}\n".encode()
    return files


@settings(max_examples=40, deadline=None)
@given(before=_FILES, after=_FILES)
def test_a_context_is_reported_exactly_when_its_answer_differs(before, after) -> None:
    base, head = _repository(before), _repository(after)
    result = diff_files(base, head)
    reported = {c.key for change in result.changes for c in change.contexts}
    base_repo, head_repo = load_repository(base), load_repository(head)
    contexts, _ = contexts_for(base_repo, head_repo)
    differing = set()
    for context in contexts:
        one, two = resolve(base_repo, context), resolve(head_repo, context)
        seen = (one.file_path, one.content, dict(one.parameters))
        if seen != (two.file_path, two.content, dict(two.parameters)):
            differing.add(context.key)
    assert reported == differing  # BASE declares no PATH `variables`: no context is merged
    assert not diff_files(base, base).changed
    backwards = diff_files(head, base)
    assert {(c.head, c.base) for c in backwards.changes} == {
        (c.base, c.head) for c in result.changes
    }
    assert result.changed == bool(differing)
