"""The /metrics exposition: every family present, recording functions move the numbers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from github_app import metrics

FAMILIES = {
    "guildprompts_webhook_deliveries": "counter",
    "guildprompts_delivery_processing_seconds": "histogram",
    "guildprompts_queue_depth": "gauge",
    "guildprompts_queue_oldest_pending_age_seconds": "gauge",
    "guildprompts_github_requests": "counter",
    "guildprompts_github_request_seconds": "histogram",
    "guildprompts_github_rate_limit_remaining": "gauge",
    "guildprompts_syncs": "counter",
    "guildprompts_push_to_live_seconds": "histogram",
    "guildprompts_resolver_cache_requests": "counter",
    "guildprompts_resolve_seconds": "histogram",
    "guildprompts_active_snapshot_age_seconds": "gauge",
    "guildprompts_metrics_probe_up": "gauge",
}


@pytest.fixture(autouse=True)
def no_probes() -> Iterator[None]:
    metrics.set_queue_probe(None)
    metrics.set_snapshot_probe(None)
    yield
    metrics.set_queue_probe(None)
    metrics.set_snapshot_probe(None)


def scrape() -> dict[str, object]:
    body, content_type = metrics.render_latest()
    assert content_type.startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_exposition_contains_every_family_with_its_type() -> None:
    families = scrape()
    for name, kind in FAMILIES.items():
        assert name in families, name
        assert families[name].type == kind, name


def test_deliveries_are_counted_by_event_and_outcome() -> None:
    before = value("guildprompts_webhook_deliveries_total", event="push", outcome="stored")
    metrics.count_delivery("push", "stored")
    metrics.count_delivery("push", "stored")
    after = value("guildprompts_webhook_deliveries_total", event="push", outcome="stored")
    assert after == before + 2


def test_unknown_events_share_one_label_value() -> None:
    before = value("guildprompts_webhook_deliveries_total", event="other", outcome="rejected")
    metrics.count_delivery("attacker-chosen-name-1", "rejected")
    metrics.count_delivery("attacker-chosen-name-2", "rejected")
    assert (
        value("guildprompts_webhook_deliveries_total", event="other", outcome="rejected")
        == before + 2
    )
    assert "attacker-chosen-name-1" not in metrics.render_latest()[0].decode()


def test_processing_latency_is_a_histogram_by_event() -> None:
    labels = {"event": "pull_request", "outcome": "failed"}
    before = value("guildprompts_delivery_processing_seconds_count", **labels)
    metrics.observe_processing("pull_request", 0.2, "failed")
    assert value("guildprompts_delivery_processing_seconds_count", **labels) == before + 1
    assert value("guildprompts_delivery_processing_seconds_bucket", le="0.25", **labels) >= 1


def test_github_requests_by_template_status_and_rate_limit_per_installation() -> None:
    endpoint = "GET /repos/{owner}/{repo}/git/trees/{sha}"
    before = value("guildprompts_github_requests_total", endpoint=endpoint, status="200")
    metrics.record_github_request(
        "GET https://api.github.com/repos/octo/prompts/git/trees/abc123?recursive=1",
        200,
        0.08,
        4242,
        4999,
    )
    assert (
        value("guildprompts_github_requests_total", endpoint=endpoint, status="200") == before + 1
    )
    assert value("guildprompts_github_rate_limit_remaining", installation="4242") == 4999
    assert value("guildprompts_github_request_seconds_count", endpoint=endpoint) >= 1

    metrics.record_github_request("GET /repos/{owner}/{repo}/git/trees/{sha}", 200, 0.1, 4242, None)
    assert value("guildprompts_github_rate_limit_remaining", installation="4242") == 4999

    jwt_endpoint = "POST /app/installations/{id}/access_tokens"
    failures = value("guildprompts_github_requests_total", endpoint=jwt_endpoint, status="error")
    metrics.record_github_request(
        "POST /app/installations/4242/access_tokens", None, 10.0, None, 4000
    )
    metrics.record_github_request("POST /app/installations/{id}/access_tokens", 0, 10.0, None, None)
    assert (
        value("guildprompts_github_requests_total", endpoint=jwt_endpoint, status="error")
        == failures + 2
    )
    assert value("guildprompts_github_rate_limit_remaining", installation="app") == 4000


@pytest.mark.parametrize(
    ("endpoint", "template"),
    [
        (
            "GET /repos/o/r/contents/prompts/a/b.md?ref=main",
            "GET /repos/{owner}/{repo}/contents/{path}",
        ),
        (
            "GET https://ghe.example/api/v3/repos/o/r/git/blobs/f00d",
            "GET /repos/{owner}/{repo}/git/blobs/{sha}",
        ),
        ("GET /repos/o/r/git/ref/tags/v1", "GET /repos/{owner}/{repo}/git/ref/{ref}"),
        ("GET /repos/o/r/git/tags/940bd33", "GET /repos/{owner}/{repo}/git/tags/{tag_sha}"),
        ("PATCH /repos/o/r/check-runs/77", "PATCH /repos/{owner}/{repo}/check-runs/{id}"),
        ("GET /repos/o/r/branches/feature/x", "GET /repos/{owner}/{repo}/branches/{branch}"),
        ("GET /repos/o/r/", "GET /repos/{owner}/{repo}"),
        ("POST /app/hook/deliveries/123/attempts", "POST /app/hook/deliveries/{id}/attempts"),
        ("POST /app-manifests/secretcode/conversions", "POST /app-manifests/{code}/conversions"),
        ("GET /orgs/acme/installation", "GET /orgs/{org}/installation"),
        ("GET /repos/{owner}/{repo}/git/trees/{sha}", "GET /repos/{owner}/{repo}/git/trees/{sha}"),
        (
            "POST /app/installations/{installation_id}/access_tokens?x=1",
            "POST /app/installations/{installation_id}/access_tokens",
        ),
        ("GET /something/new/1", "GET other"),
        ("/app", "/app"),
    ],
)
def test_endpoint_labels_are_route_templates(endpoint: str, template: str) -> None:
    assert metrics.endpoint_template(endpoint) == template


def test_syncs_and_push_to_live() -> None:
    before = value("guildprompts_syncs_total", outcome="activated", trigger="push")
    metrics.count_sync("activated")
    assert value("guildprompts_syncs_total", outcome="activated", trigger="push") == before + 1
    count = value("guildprompts_push_to_live_seconds_count")
    metrics.observe_push_to_live(0.4)
    assert value("guildprompts_push_to_live_seconds_count") == count + 1
    assert value("guildprompts_push_to_live_seconds_bucket", le="0.5") >= 1


def test_resolver_hits_misses_and_sub_millisecond_latency() -> None:
    hits = value("guildprompts_resolver_cache_requests_total", result="hit")
    misses = value("guildprompts_resolver_cache_requests_total", result="miss")
    fast = value("guildprompts_resolve_seconds_bucket", result="hit", le="5e-06")
    metrics.record_resolve(True, 0.000_003)
    metrics.record_resolve(False, 0.002)
    assert value("guildprompts_resolver_cache_requests_total", result="hit") == hits + 1
    assert value("guildprompts_resolver_cache_requests_total", result="miss") == misses + 1
    assert value("guildprompts_resolve_seconds_bucket", result="hit", le="5e-06") == fast + 1


def test_queue_gauges_come_from_the_probe_at_scrape_time() -> None:
    depth = [3]
    metrics.set_queue_probe(lambda: metrics.QueueDepth(depth[0], 12.5))
    assert value("guildprompts_queue_depth") == 3
    depth[0] = 7
    assert value("guildprompts_queue_depth") == 7
    assert value("guildprompts_queue_oldest_pending_age_seconds") == 12.5
    assert value("guildprompts_metrics_probe_up", probe="queue") == 1


def test_a_failing_probe_drops_its_samples_and_says_so() -> None:
    def broken() -> metrics.QueueDepth:
        raise ConnectionError("database down")

    metrics.set_queue_probe(broken)
    families = scrape()
    assert families["guildprompts_queue_depth"].samples == []
    up = metrics.REGISTRY.get_sample_value("guildprompts_metrics_probe_up", {"probe": "queue"})
    assert up == 0.0


def test_snapshot_age_per_tracked_branch_follows_the_store() -> None:
    branches = [
        metrics.SnapshotAge("octo/prompts", "main", time.time() - 120),
        metrics.SnapshotAge("octo/prompts", "staging", time.time() - 5),
    ]
    metrics.set_snapshot_probe(lambda: branches)
    age = value(
        "guildprompts_active_snapshot_age_seconds", repository="octo/prompts", branch="main"
    )
    assert 119 <= age < 130
    branches.pop()
    assert (
        metrics.REGISTRY.get_sample_value(
            "guildprompts_active_snapshot_age_seconds",
            {"repository": "octo/prompts", "branch": "staging"},
        )
        is None
    )
