"""Prometheus metrics, one registry per process (tests run several gateways in one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "optout_http_requests_total", "HTTP requests by route and status",
            ["route", "status"], registry=self.registry)
        self.http_latency = Histogram(
            "optout_http_request_seconds", "HTTP request latency by route", ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        self.opt_events = Counter(
            "optout_events_total", "Opt-outs and opt-ins recorded",
            ["action", "channel", "source"], registry=self.registry)
        self.checks = Counter(
            "optout_checks_total", "Identifiers checked against the suppression list",
            ["channel", "result"], registry=self.registry)
        self.refusals = Counter(
            "optout_refusals_total", "Refusals by error code", ["code"], registry=self.registry)
        self.journal_pending = Gauge(
            "optout_journal_pending_events", "Journalled events not yet applied to Redis",
            registry=self.registry)
        self.store_up = Gauge(
            "optout_store_up", "1 while the store answers", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
