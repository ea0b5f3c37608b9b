"""Every Prometheus metric of guildprompts, defined once, and the `/metrics` exposition.

Metrics live on this module's own `REGISTRY` (not prometheus-client's global one), so importing
the module twice, building several apps in one test process or running prometheus-client's
default process collectors elsewhere never collides.

Label values are bounded by construction: webhook event names outside a fixed list become
"other" (an unverified request chooses its own `X-GitHub-Event`), GitHub endpoints are reduced
to their route template, and no label carries a guild id. Values that live in the database
(queue depth, snapshot ages) are read at scrape time through probes registered with
`set_queue_probe` and `set_snapshot_probe`, so a scrape shows the store's state, not the last
value some loop happened to write, and branches that stop being tracked disappear.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple
from urllib.parse import urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "KNOWN_EVENTS",
    "REGISTRY",
    "QueueDepth",
    "SnapshotAge",
    "count_delivery",
    "count_sync",
    "endpoint_template",
    "observe_processing",
    "observe_push_to_live",
    "record_github_request",
    "record_resolve",
    "render_latest",
    "set_queue_probe",
    "set_snapshot_probe",
]

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

# Events that get their own label value; everything else is counted as "other".
KNOWN_EVENTS = frozenset(
    {
        "check_run",
        "check_suite",
        "create",
        "delete",
        "github_app_authorization",
        "installation",
        "installation_repositories",
        "installation_target",
        "ping",
        "pull_request",
        "push",
        "repository",
        "guildprompts.sync",
    }
)

DELIVERIES = Counter(
    "guildprompts_webhook_deliveries",
    "Webhook deliveries received, by event and intake outcome (stored, duplicate, rejected).",
    ["event", "outcome"],
    registry=REGISTRY,
)
PROCESSING_SECONDS = Histogram(
    "guildprompts_delivery_processing_seconds",
    "Time the worker spent handling one delivery, by event and outcome "
    "(processed, retried, failed).",
    ["event", "outcome"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
GITHUB_REQUESTS = Counter(
    "guildprompts_github_requests",
    "Requests sent to the GitHub API, by route template and HTTP status "
    '("error" when no response came).',
    ["endpoint", "status"],
    registry=REGISTRY,
)
GITHUB_REQUEST_SECONDS = Histogram(
    "guildprompts_github_request_seconds",
    "Duration of GitHub API requests, by route template.",
    ["endpoint"],
    registry=REGISTRY,
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
GITHUB_RATE_REMAINING = Gauge(
    "guildprompts_github_rate_limit_remaining",
    'X-RateLimit-Remaining of the last GitHub response, per installation ("app" for '
    "requests made with the App's JWT).",
    ["installation"],
    registry=REGISTRY,
)
SYNCS = Counter(
    "guildprompts_syncs",
    "Branch syncs finished, by outcome and trigger.",
    ["outcome", "trigger"],
    registry=REGISTRY,
)
PUSH_TO_LIVE_SECONDS = Histogram(
    "guildprompts_push_to_live_seconds",
    "From a push delivery's arrival to the commit of its snapshot's activation.",
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30, 60, 300),
)
PUSH_TO_STREAM_SECONDS = Histogram(
    "guildprompts_push_to_stream_seconds",
    "From a commit becoming its branch's head (the push) to its activation leaving on a bridge "
    "stream (GET /bridge/v1/stream), once per connection and commit.",
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30, 60, 300),
)
STREAM_CONNECTIONS = Gauge(
    "guildprompts_stream_connections",
    "Bots connected to GET /bridge/v1/stream in this process.",
    registry=REGISTRY,
)
RESOLVER_CACHE = Counter(
    "guildprompts_resolver_cache_requests",
    "Bridge resolutions answered from the resolver cache (hit) or computed (miss).",
    ["result"],
    registry=REGISTRY,
)
RESOLVE_SECONDS = Histogram(
    "guildprompts_resolve_seconds",
    "Time to answer one bridge resolution in process, by cache result.",
    ["result"],
    registry=REGISTRY,
    buckets=(
        0.000_002,
        0.000_005,
        0.000_01,
        0.000_025,
        0.000_05,
        0.000_1,
        0.000_25,
        0.000_5,
        0.001,
        0.002_5,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
    ),
)

# The resolve hot path runs these on every call: bind the children once (labels() costs ~1 us).
_CACHE_HIT, _CACHE_MISS = RESOLVER_CACHE.labels("hit"), RESOLVER_CACHE.labels("miss")
_RESOLVE_HIT, _RESOLVE_MISS = RESOLVE_SECONDS.labels("hit"), RESOLVE_SECONDS.labels("miss")


def _event_label(event: str) -> str:
    return event if event in KNOWN_EVENTS else "other"


def count_delivery(event: str, outcome: str) -> None:
    """Count one webhook at intake; `outcome` is stored, duplicate or rejected."""
    DELIVERIES.labels(_event_label(event), outcome).inc()


def observe_processing(event: str, seconds: float, outcome: str = "processed") -> None:
    """The worker finished one attempt at a delivery: processed, retried or failed."""
    PROCESSING_SECONDS.labels(_event_label(event), outcome).observe(seconds)


def record_github_request(
    endpoint: str,
    status: int | str | None,
    duration: float,
    installation_id: int | str | None,
    rate_remaining: int | None,
) -> None:
    """The GitHub client's `on_request` hook: one request and what GitHub said about limits.

    `endpoint` may be a template ("GET /repos/{owner}/{repo}/git/trees/{sha}") or the real
    method and path or URL; either way only the template becomes a label. `status` None or 0
    means no response (timeout, connection error). `installation_id` None means the App's JWT.
    """
    label = endpoint_template(endpoint)
    GITHUB_REQUESTS.labels(label, str(status) if status else "error").inc()
    GITHUB_REQUEST_SECONDS.labels(label).observe(duration)
    if rate_remaining is not None:
        installation = "app" if installation_id is None else str(installation_id)
        GITHUB_RATE_REMAINING.labels(installation).set(rate_remaining)


def count_sync(outcome: str, trigger: str = "push") -> None:
    """A sync ended; `outcome` and `trigger` are the sync module's fixed vocabularies."""
    SYNCS.labels(outcome, trigger).inc()


def observe_push_to_live(seconds: float) -> None:
    """A pushed snapshot became active `seconds` after its delivery arrived."""
    PUSH_TO_LIVE_SECONDS.observe(seconds)


def record_resolve(hit: bool, seconds: float) -> None:
    """One bridge resolution: a cache hit or miss and how long it took (hot path: ~1 us)."""
    if hit:
        _CACHE_HIT.inc()
        _RESOLVE_HIT.observe(seconds)
    else:
        _CACHE_MISS.inc()
        _RESOLVE_MISS.observe(seconds)


# --- Route templates for GitHub endpoints ----------------------------------------------------

_REPO = r"/repos/[^/]+/[^/]+"
_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern + r"$"), template)
    for pattern, template in (
        (_REPO + r"/contents(?:/.*)?", "/repos/{owner}/{repo}/contents/{path}"),
        (_REPO + r"/git/trees/.+", "/repos/{owner}/{repo}/git/trees/{sha}"),
        (_REPO + r"/git/blobs/.+", "/repos/{owner}/{repo}/git/blobs/{sha}"),
        (_REPO + r"/git/(?:ref|refs)/.+", "/repos/{owner}/{repo}/git/ref/{ref}"),
        (_REPO + r"/git/tags/.+", "/repos/{owner}/{repo}/git/tags/{tag_sha}"),
        (_REPO + r"/branches/.+", "/repos/{owner}/{repo}/branches/{branch}"),
        (_REPO + r"/commits/.+", "/repos/{owner}/{repo}/commits/{ref}"),
        (_REPO + r"/check-runs/\d+", "/repos/{owner}/{repo}/check-runs/{id}"),
        (_REPO + r"/check-runs", "/repos/{owner}/{repo}/check-runs"),
        (_REPO + r"/installation", "/repos/{owner}/{repo}/installation"),
        (_REPO, "/repos/{owner}/{repo}"),
        (_REPO + r"/.*", "/repos/{owner}/{repo}/..."),
        (r"/repositories/\d+", "/repositories/{id}"),
        (r"/app/installations/\d+/access_tokens", "/app/installations/{id}/access_tokens"),
        (r"/app/installations/\d+", "/app/installations/{id}"),
        (r"/app/installations", "/app/installations"),
        (r"/app/hook/deliveries/\d+/attempts", "/app/hook/deliveries/{id}/attempts"),
        (r"/app/hook/deliveries/\d+", "/app/hook/deliveries/{id}"),
        (r"/app/hook/deliveries", "/app/hook/deliveries"),
        (r"/app", "/app"),
        (r"/app-manifests/[^/]+/conversions", "/app-manifests/{code}/conversions"),
        (r"/installation/repositories", "/installation/repositories"),
        (r"/users/[^/]+/installation", "/users/{username}/installation"),
        (r"/orgs/[^/]+/installation", "/orgs/{org}/installation"),
        (r"/rate_limit", "/rate_limit"),
    )
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})


def endpoint_template(endpoint: str) -> str:
    """Reduce a method and path or URL to a bounded route label.

    "GET https://ghe/api/v3/repos/o/r/git/trees/abc?x=1" becomes
    "GET /repos/{owner}/{repo}/git/trees/{sha}". Templates (what the client reports) pass
    through; a path matching no known route becomes "<METHOD> other", so the label set stays
    bounded whatever a caller passes.
    """
    method, _, rest = endpoint.strip().partition(" ")
    if method.upper() not in _METHODS:
        method, rest = "", endpoint.strip()
    path = urlsplit(rest.strip()).path or "/"
    path = path.removeprefix("/api/v3")
    path = path.rstrip("/") or "/"
    prefix = f"{method.upper()} " if method else ""
    if "{" in path:  # a template from the client: bounded by its code
        return prefix + path
    for pattern, template in _ROUTES:
        if pattern.match(path):
            return prefix + template
    return prefix + "other"


# --- Values read from the store at scrape time ------------------------------------------------


class QueueDepth(NamedTuple):
    """What the queue probe reports: pending deliveries and the oldest one's age in seconds."""

    depth: int
    oldest_pending_age: float


class SnapshotAge(NamedTuple):
    """One tracked branch and when its active snapshot was activated (Unix time)."""

    repository: str
    branch: str
    activated_at: float


QueueProbe = Callable[[], QueueDepth]
SnapshotProbe = Callable[[], Iterable[SnapshotAge]]


class _StoreCollector(Collector):
    """Asks the registered probes at scrape time; a failing probe drops its samples only."""

    def __init__(self) -> None:
        self.queue_probe: QueueProbe | None = None
        self.snapshot_probe: SnapshotProbe | None = None

    def describe(self) -> list[GaugeMetricFamily]:
        return list(self._families())

    def collect(self) -> list[GaugeMetricFamily]:
        depth, oldest, ages, up = self._families()
        if self.queue_probe is not None:
            try:
                stats = self.queue_probe()
            except Exception:
                log.warning("metrics: the queue probe failed", exc_info=True)
                up.add_metric(["queue"], 0)
            else:
                depth.add_metric([], stats.depth)
                oldest.add_metric([], stats.oldest_pending_age)
                up.add_metric(["queue"], 1)
        if self.snapshot_probe is not None:
            try:
                rows = list(self.snapshot_probe())
            except Exception:
                log.warning("metrics: the snapshot probe failed", exc_info=True)
                up.add_metric(["snapshots"], 0)
            else:
                now = time.time()
                for row in rows:
                    ages.add_metric([row.repository, row.branch], max(0.0, now - row.activated_at))
                up.add_metric(["snapshots"], 1)
        return [depth, oldest, ages, up]

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily("guildprompts_queue_depth", "Deliveries waiting to be processed."),
            GaugeMetricFamily(
                "guildprompts_queue_oldest_pending_age_seconds",
                "Age of the oldest delivery still waiting (0 when none waits).",
            ),
            GaugeMetricFamily(
                "guildprompts_active_snapshot_age_seconds",
                "Seconds since each tracked branch's active snapshot was activated.",
                labels=["repository", "branch"],
            ),
            GaugeMetricFamily(
                "guildprompts_metrics_probe_up",
                "1 when the store answered this scrape's probe, 0 when it failed.",
                labels=["probe"],
            ),
        )


_STORE = _StoreCollector()
REGISTRY.register(_STORE)


def set_queue_probe(probe: QueueProbe | None) -> None:
    """Register the callable that reads queue depth and oldest pending age (None removes it).

    It runs during `render_latest`, in the scraping thread: the /metrics handler should call
    `render_latest` off the event loop when the probe queries a database.
    """
    _STORE.queue_probe = probe


def set_snapshot_probe(probe: SnapshotProbe | None) -> None:
    """Register the callable listing tracked branches' active snapshots (None removes it)."""
    _STORE.snapshot_probe = probe


def render_latest() -> tuple[bytes, str]:
    """The text exposition of every metric and its content type, for `GET /metrics`."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
