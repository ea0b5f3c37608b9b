"""Guild bindings on both engines: concurrent edits detected, pending requests that never
replace a working binding, encrypted tokens, audit entries, and what a guild is served."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from github_app.secrets import Vault, generate_key
from github_app.store import audit, bindings, branches, installations, serving, snapshots
from github_app.store.db import Database
from github_app.store.errors import ConcurrentUpdateError, NotFoundError
from github_app.store.models import UNCHANGED, BindingState, BranchStatus
from tests.store_helpers import save_binding, update_binding

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REPO = 700
GUILD = "123456789012345678"


@pytest.fixture
def vault() -> Vault:
    return Vault([generate_key()])


def _bind(
    db: Database,
    guild: str = GUILD,
    *,
    branch: str | None = None,
    expected: int | None = None,
    **extra,
) -> int:
    with db.session() as session:
        binding = save_binding(
            session,
            guild,
            repository_full_name="Owner/Prompts",
            repository_id=REPO,
            branch=branch,
            actor="admin-1",
            expected_version=expected,
            **extra,
        )
        return binding.version


def _installed_repository(db: Database) -> None:
    with db.session() as session:
        installations.upsert_installation(session, 1, "owner")
        installations.upsert_repository(
            session,
            REPO,
            "Owner/Prompts",
            private=True,
            default_branch="main",
            installation_id=1,
        )


def _activate(db: Database, sha: str, *, branch: str = "main", at: datetime = T0) -> int:
    content = sha.encode()
    blob = snapshots.git_blob_sha(content)
    with db.session() as session:
        snapshots.store_blobs(session, {blob: content})
        snapshot = snapshots.create_snapshot(session, REPO, sha, {"PATH": blob}, valid=True)
        assert branches.activate(session, REPO, branch, snapshot.id, at)
        return snapshot.id


def test_a_concurrent_edit_is_detected(db: Database) -> None:
    version = _bind(db)
    with db.session() as session:
        first = update_binding(session, GUILD, version, actor="admin-1", branch="dev")
    assert first.version == version + 1
    with db.session() as session, pytest.raises(ConcurrentUpdateError) as stale:
        update_binding(session, GUILD, version, actor="admin-2", enabled=False)
    assert stale.value.actual == version + 1 and "reload" in str(stale.value)
    with db.session() as session:
        binding = bindings.get_binding(session, GUILD)
        assert binding is not None and binding.branch == "dev" and binding.enabled
    with db.session() as session, pytest.raises(ConcurrentUpdateError):
        save_binding(
            session,
            GUILD,
            repository_full_name="x/y",
            repository_id=None,
            branch=None,
            actor="admin-3",
            expected_version=None,
        )


def test_two_admins_racing_on_one_version_one_wins(db: Database) -> None:
    version = _bind(db)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def edit(actor: str, branch: str) -> None:
        barrier.wait()
        try:
            with db.session() as session:
                update_binding(session, GUILD, version, actor=actor, branch=branch)
            outcomes.append("saved")
        except ConcurrentUpdateError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=edit, args=(f"admin-{i}", f"b{i}")) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "saved"]


def test_token_is_encrypted_and_never_audited(db: Database, vault: Vault) -> None:
    token = "github_pat_" + "x" * 70
    _bind(db, token=token, vault=vault)
    with db.session() as session:
        raw = session.execute(text("SELECT token_ciphertext FROM guild_bindings")).scalar_one()
        assert token not in raw
        binding = bindings.get_binding(session, GUILD)
        assert binding is not None and bindings.binding_token(binding, vault) == token
        assert bindings.repository_token(session, vault, REPO) == token
        entries = audit.audit_entries(session, GUILD)
        assert [entry.action for entry in entries] == ["binding.set"]
        assert entries[0].after["has_token"] is True and token not in str(entries[0].after)
        with pytest.raises(ValueError, match="vault"):
            update_binding(session, GUILD, binding.version, actor="a", token="t")


def test_a_pending_request_never_replaces_a_working_binding(db: Database) -> None:
    _installed_repository(db)
    version = _bind(db)
    _activate(db, "a" * 40)
    with db.session() as session:
        bindings.save_pending(
            session,
            GUILD,
            repository_full_name="other/repo",
            repository_id=None,
            branch=None,
            actor="admin-2",
            expected_version=version,
            status_message="waiting for the App to be installed",
        )
    with db.session() as session:
        state = serving.guild_state(session, GUILD)
        assert state is not None and state.repository_full_name == "Owner/Prompts"
        assert state.commit_sha == "a" * 40
        pending = bindings.get_pending(session, GUILD)
        assert pending is not None and pending.status_message.startswith("waiting")
        # The App is installed on the other repository: the request learns its id.
        installations.upsert_repository(
            session, 900, "Other/Repo", private=False, default_branch="trunk", installation_id=1
        )
        assert [
            p.guild_id for p in bindings.pending_for_repository(session, repository_id=900)
        ] == [GUILD]
        assert serving.is_tracked(session, 900, "trunk")
        assert serving.guilds_for_branch(session, 900, "trunk", pending=True) == [GUILD]
        assert serving.guilds_for_branch(session, 900, "trunk") == []

    with db.session() as session:
        promoted = bindings.promote_pending(session, GUILD, actor="system")
        assert (promoted.repository_id, promoted.version) == (900, version + 1)
        assert bindings.get_pending(session, GUILD) is None
        with pytest.raises(NotFoundError):
            bindings.promote_pending(session, GUILD, actor="system")
        actions = [entry.action for entry in audit.audit_entries(session, GUILD)]
        assert actions == ["binding.promote", "binding.request", "binding.set"]


def test_a_request_made_against_an_old_version_cannot_be_promoted(db: Database) -> None:
    version = _bind(db)
    with db.session() as session:
        bindings.save_pending(
            session,
            GUILD,
            repository_full_name="o/r",
            repository_id=None,
            branch=None,
            actor="a",
            expected_version=version,
        )
    with db.session() as session:
        update_binding(session, GUILD, version, actor="b", enabled=False)
    with db.session() as session, pytest.raises(ConcurrentUpdateError):
        bindings.promote_pending(session, GUILD, actor="system")
    with db.session() as session, pytest.raises(ConcurrentUpdateError):
        bindings.save_pending(
            session,
            GUILD,
            repository_full_name="o/r",
            repository_id=None,
            branch=None,
            actor="a",
            expected_version=version,
        )


def test_guild_state_follows_the_default_branch_and_reports_staleness(db: Database) -> None:
    _installed_repository(db)
    _bind(db)  # follows the default branch
    _bind(db, "222", branch="dev")
    with db.session() as session:
        state = serving.guild_state(session, GUILD)
        assert state is not None and state.snapshot_id is None  # nothing synced yet: defaults
        assert state.effective_branch == "main" and state.installed and state.private

    snapshot_id = _activate(db, "b" * 40)
    with db.session() as session:
        branches.set_branch_status(
            session,
            REPO,
            "main",
            BranchStatus.REJECTED,
            "serving bbbbbbb, ccccccc rejected",
            diagnostics=[{"path": "PATH", "line": 3, "severity": "error"}],
        )
    with db.session() as session:
        state = serving.guild_state(session, GUILD)
        assert state is not None and (state.snapshot_id, state.commit_sha) == (
            snapshot_id,
            "b" * 40,
        )
        assert not state.is_stale  # a rejected push is not staleness: the good one serves
        assert state.diagnostics[0]["line"] == 3 and "rejected" in state.status_message
        branches.set_branch_status(session, REPO, "main", BranchStatus.ERROR, "GitHub is down")
    with db.session() as session:
        states = serving.all_guild_states(session)
        assert states[GUILD].is_stale and states["222"].snapshot_id is None
        targets = serving.tracked_targets(session)
        assert [(t.branch, t.installation_id, t.active_sha) for t in targets] == [
            ("dev", 1, None),
            ("main", 1, "b" * 40),
        ]

    with db.session() as session:  # renamed, new default branch: followers follow both
        installations.upsert_repository(
            session, REPO, "owner/prompt-library", private=True, default_branch="dev"
        )
        state = serving.guild_state(session, GUILD)
        assert state is not None and state.effective_branch == "dev" and state.snapshot_id is None
        assert state.repository_full_name == "owner/prompt-library"
        assert installations.repository_by_name(session, "OWNER/Prompt-Library") is not None


def test_disabled_and_no_access_bindings_serve_defaults(db: Database) -> None:
    _installed_repository(db)
    version = _bind(db)
    _activate(db, "d" * 40)
    with db.session() as session:
        update_binding(session, GUILD, version, actor="a", enabled=False, branch=UNCHANGED)
        state = serving.guild_state(session, GUILD)
        assert state is not None and state.snapshot_id is None and not state.enabled
        update_binding(session, GUILD, version + 1, actor="a", enabled=True)
        bindings.set_binding_state(session, GUILD, BindingState.NO_ACCESS, "access revoked")
        state = serving.guild_state(session, GUILD)
        assert state is not None and state.snapshot_id is None
        assert state.status_message == "access revoked" and state.version == version + 2


def test_delete_binding_and_generation(db: Database) -> None:
    with db.session() as session:
        start = branches.current_generation(session)
    version = _bind(db)
    with db.session() as session:
        assert branches.current_generation(session) > start
        with pytest.raises(ConcurrentUpdateError):
            bindings.delete_binding(session, GUILD, actor="a", expected_version=version + 5)
    with db.session() as session:
        assert bindings.delete_binding(session, GUILD, actor="a", expected_version=version)
        assert not bindings.delete_binding(session, GUILD, actor="a")
        assert serving.guild_state(session, GUILD) is None
        assert audit.audit_entries(session, GUILD)[0].action == "binding.delete"


def test_logs_and_check_runs(db: Database) -> None:
    from github_app.store import checkruns

    with db.session() as session:
        audit.record_sync(
            session,
            REPO,
            trigger="push",
            outcome="activated",
            commit_sha="e" * 40,
            branch="main",
            files_fetched=2,
            api_calls=5,
            duration_ms=120,
        )
        checkruns.record_check_run(session, REPO, "e" * 40, 555)
        checkruns.record_check_run(session, REPO, "e" * 40, 555)  # a handler ran twice
        done = checkruns.complete_check_run(session, 555, "success", T0 + timedelta(seconds=1))
        assert (done.status, done.conclusion) == ("completed", "success")
        assert len(checkruns.check_runs_for(session, REPO, "e" * 40)) == 1
        with pytest.raises(NotFoundError):
            checkruns.complete_check_run(session, 556, "failure")
        [entry] = audit.recent_syncs(session, REPO)
        assert (entry.api_calls, entry.outcome) == (5, "activated")


def test_a_repository_object_without_default_branch_invents_none(db: Database) -> None:
    """GitHub's repository object is remembered as given: never a made-up `main`."""
    new = {"id": 77, "full_name": "owner/trunk-only", "private": False}
    with db.session() as session:
        assert installations.remember_repository(session, new, installation_id=None) is None
        assert installations.get_repository(session, 77) is None
        given = {**new, "default_branch": "trunk"}
        assert installations.remember_repository(session, given, installation_id=999) is not None
    with db.session() as session:  # later objects without the field keep the stored branch
        assert installations.remember_repository(session, new) is not None
        stored = installations.get_repository(session, 77)
        assert stored is not None and stored.default_branch == "trunk"
        assert stored.installation_id is None  # installation 999 is not stored: not linked
