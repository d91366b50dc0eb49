"""One running Tattletail: the compiled config, the worker pool, the AWS and HTTP clients, and
where rules with memory keep their state.

A Lambda container keeps one across invocations (the pool and the rules are built once, at the
cold start); the CLI makes one per command. State lives in DynamoDB in Lambda
(TATTLETAIL_STATE_TABLE) and in memory for a local run, which never touches a deployment's state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from tattletail import logs
from tattletail.aws import AwsClients
from tattletail.config import Config
from tattletail.dedupe import DedupeTable
from tattletail.destinations import DeliveryContext
from tattletail.dispatch import DeliveryPolicy, Dispatcher
from tattletail.objects import ObjectRef
from tattletail.pipeline import AlertSink, Pipeline, rule_sources
from tattletail.ratelimit import TokenBucket
from tattletail.retry import Backoff
from tattletail.settings import Settings
from tattletail.state import InMemoryStore, StatePlan, StateStage, StateStore
from tattletail.state.dynamodb import DynamoDBStore
from tattletail.state.store import UnconfiguredStore
from tattletail.summary import RunSummary
from tattletail.workers import WorkerPool


class Service:
    def __init__(
        self, settings: Settings, config: Config, aws: AwsClients, local: bool = False
    ) -> None:
        self.settings = settings
        self.aws = aws
        self.local = local
        self.store: StateStore | None = (
            InMemoryStore()
            if local
            else DynamoDBStore(settings.state_table, aws)
            if settings.state_table
            else None
        )
        # Windows known to be finished, kept while the container lives (saves their reads).
        self._state_done: set[str] = set()
        self.delivery = DeliveryContext(aws, settings.send_timeout)
        self.dedupe = (
            DedupeTable(
                settings.dedupe_table,
                settings.dedupe_claim_seconds,
                settings.dedupe_retention_seconds,
            )
            if settings.dedupe_table
            else None
        )
        self._buckets: dict[str, TokenBucket] = {}
        self._install(config, self._start_pool(config))

    def _start_pool(self, config: Config) -> WorkerPool:
        settings = self.settings
        plan = StatePlan.of(config)
        pool = WorkerPool(
            rule_sources(config, plan),
            settings.workers,
            settings.batch_size,
            settings.batch_timeout,
            settings.worker_memory,
        )
        pool.start()
        return pool

    def _install(self, config: Config, pool: WorkerPool) -> None:
        self.config = config
        self.plan = StatePlan.of(config)
        self._missing_store: UnconfiguredStore | None = None
        if self.plan.stateful and self.store is None:
            names = ", ".join(
                repr(rule.name) for rule in config.rules if rule.stateful and rule.enabled
            )
            message = (
                f"rules with memory ({names}) need a state table: set TATTLETAIL_STATE_TABLE "
                "to a DynamoDB table (deploy/template.yaml creates one), or disable them"
            )
            # Loud, but not fatal: every other rule alerts; files with their matches fail.
            logs.log(logging.ERROR, "state_table_missing", error=message)
            self._missing_store = UnconfiguredStore(message)
        self._buckets = {}
        self.pool = pool
        self.pipeline = Pipeline(config, self.settings, pool, self.aws)
        settings = self.settings
        logs.log(
            logging.INFO,
            "service_started",
            config=config.source,
            rules=len(config.rules),
            destinations=len(config.destinations),
            workers=settings.workers,
        )

    async def replace_config(self, config: Config) -> None:
        """Swap in a new (already validated) config: new workers compile its rules first, so
        the old ones keep serving until the new ones are ready."""
        old = self.pool
        pool = await asyncio.to_thread(self._start_pool, config)
        pool.inherit_quarantine(old)
        self._install(config, pool)
        await asyncio.to_thread(old.close)

    def policy(self) -> DeliveryPolicy:
        settings = self.settings
        return DeliveryPolicy(
            concurrency=settings.destination_concurrency,
            send_timeout=settings.send_timeout,
            retries=settings.send_retries,
            retry_budget=settings.retry_budget,
            backoff=Backoff(settings.retry_base, settings.retry_cap),
            flood_threshold=settings.flood_threshold,
        )

    async def run(
        self,
        refs: Sequence[ObjectRef],
        summary: RunSummary,
        sink: AlertSink | None = None,
        deadline: float | None = None,
    ) -> list[ObjectRef]:
        """Process the objects, delivering alerts to the config's destinations unless a sink
        is given; return the objects that failed. Raises DeliveryIncomplete after everything
        else was done when some alert could not be delivered nor dead-lettered. `deadline` is
        a time.monotonic() value that retries must not run past."""
        state = self._state_stage(summary, deadline)
        if sink is not None:
            failed = await self.pipeline.run(refs, sink, summary, state, deadline)
            if state is not None:
                await state.flush(sink)
            return failed
        dispatcher = Dispatcher(
            self.config.destinations,
            self.delivery,
            summary,
            self.policy(),
            dead_letter=self.config.dead_letter,
            dedupe=self.dedupe,
            deadline=deadline,
            buckets=self._buckets,
        )
        failed = await self.pipeline.run(refs, dispatcher.deliver_all, summary, state, deadline)
        if state is not None:
            await state.flush(dispatcher.deliver_all)
        await dispatcher.finish()
        return failed

    def _state_stage(self, summary: RunSummary, deadline: float | None) -> StateStage | None:
        if not self.plan.stateful:
            return None
        store = self.store if self.store is not None else self._missing_store
        assert store is not None  # one or the other, see _install
        return StateStage(
            self.config,
            self.plan,
            store,
            summary,
            retention=self.settings.state_retention,
            lateness=self.settings.state_lateness,
            deadline=deadline,
            local=self.local,
            done=self._state_done,
        )

    async def aclose(self) -> None:
        await self.delivery.close()
        await self.aws.close()

    def close_pool(self) -> None:
        self.pool.close()
