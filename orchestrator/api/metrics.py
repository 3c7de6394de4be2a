"""Prometheus metrics on a registry of the app's own (so several apps in one process never collide).

Request metrics are updated by middleware. Run metrics are read from the store at scrape time for the
runs this process drives, so they are exact after a restart: items per stage, filter drops by
reason, responses dropped by quality gate, queue depth; plus the generator clients' retry count and outstanding calls per replica (this
process's and its run workers').
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.execution.generator_counters import GeneratorCounters
from orchestrator.pipeline.gates import GATE_REASONS, JUDGE_UNPARSED_KEPT
from orchestrator.store import RunStore

log = logging.getLogger(__name__)


class RunCollector(Collector):
    def __init__(self, store: RunStore, active_runs: Callable[[], list[str]], generator: GeneratorCounters) -> None:
        self.store, self.active_runs, self.generator = store, active_runs, generator

    def collect(self) -> Iterator[Metric]:
        active = self.active_runs()
        runs = GaugeMetricFamily("selfspec_runs_active", "runs driven by this process")
        runs.add_metric([], len(active))
        items = CounterMetricFamily("selfspec_run_items", "committed items per run, round and stage",
                                    labels=["run_id", "round", "stage"])
        drops = CounterMetricFamily("selfspec_filter_drops", "instructions dropped, per filter reason",
                                    labels=["run_id", "round", "reason"])
        gated = CounterMetricFamily("selfspec_response_gates", "responses dropped per quality gate (and "
                                    "judge_unparsed_kept: kept without a judge score)", labels=["run_id", "round", "gate"])
        depth = GaugeMetricFamily("selfspec_run_queue_depth", "kept instructions waiting for a response",
                                  labels=["run_id", "round"])
        for run_id in active:
            for rnd, entry in self.store.stats(run_id)["rounds"].items():
                verdicts: dict[str, int] = entry.get("verdicts", {})
                counts: dict[str, int] = entry.get("samples", {})
                gates: dict[str, int] = entry.get("gates", {})
                stages = {"prompts": entry.get("prompts", 0), "instructions_kept": verdicts.get("kept", 0),
                          "samples_ok": counts.get("ok", 0), "samples_failed": counts.get("failed", 0),
                          "samples_gated": sum(n for g, n in gates.items() if g != JUDGE_UNPARSED_KEPT)}
                for stage, value in stages.items():
                    items.add_metric([run_id, rnd, stage], value)
                for reason, value in verdicts.items():
                    if reason != "kept":
                        drops.add_metric([run_id, rnd, reason], value)
                for gate in GATE_REASONS:  # a fixed label set, zeros included
                    gated.add_metric([run_id, rnd, gate], gates.get(gate, 0))
                done = stages["samples_ok"] + stages["samples_failed"] + stages["samples_gated"]
                depth.add_metric([run_id, rnd], max(stages["instructions_kept"] - done, 0))
        retries = CounterMetricFamily("selfspec_generator_retries", "generator calls retried by the client")
        retries.add_metric([], float(self.generator.retry_count))
        outstanding = GaugeMetricFamily("selfspec_generator_outstanding", "generator calls in flight, per replica",
                                        labels=["replica"])
        for url, n in self.generator.outstanding().items():
            outstanding.add_metric([url], n)
        yield from (runs, items, drops, gated, depth, retries, outstanding)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.in_flight = Gauge("selfspec_api_requests_in_flight", "HTTP requests being served",
                               registry=self.registry)
        self.requests = Counter("selfspec_api_requests", "HTTP requests by method, route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("selfspec_api_request_seconds", "HTTP request latency by route", ["route"],
                                 registry=self.registry)

    def watch_runs(self, store: RunStore, active_runs: Callable[[], list[str]],
                   generator: GeneratorCounters) -> Collector:
        collector = RunCollector(store, active_runs, generator)
        self.registry.register(collector)
        return collector

    def unwatch(self, collector: Collector) -> None:
        self.registry.unregister(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)
