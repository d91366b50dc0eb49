"""One running Tattletail: the compiled config, the worker pool, the AWS and HTTP clients.

A Lambda container keeps one across invocations (the pool and the rules are built once, at the
cold start); the CLI makes one per command.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tattletail import logs
from tattletail.aws import AwsClients
from tattletail.config import Config
from tattletail.destinations import DeliveryContext
from tattletail.dispatch import Dispatcher
from tattletail.objects import ObjectRef
from tattletail.pipeline import AlertSink, Pipeline, rule_sources
from tattletail.settings import Settings
from tattletail.summary import RunSummary
from tattletail.workers import WorkerPool


class Service:
    def __init__(self, settings: Settings, config: Config, aws: AwsClients) -> None:
        self.settings = settings
        self.config = config
        self.aws = aws
        self.pool = WorkerPool(
            rule_sources(config), settings.workers, settings.batch_size, settings.batch_timeout
        )
        self.pool.start()
        self.delivery = DeliveryContext(aws, settings.send_timeout)
        self.pipeline = Pipeline(config, settings, self.pool, aws)
        logs.log(
            logging.INFO,
            "service_started",
            config=config.source,
            rules=len(config.rules),
            destinations=len(config.destinations),
            workers=settings.workers,
        )

    async def run(
        self, refs: Sequence[ObjectRef], summary: RunSummary, sink: AlertSink | None = None
    ) -> list[ObjectRef]:
        """Process the objects, delivering alerts to the config's destinations unless a sink
        is given; return the objects that failed."""
        if sink is None:
            sink = Dispatcher(
                self.config.destinations,
                self.delivery,
                summary,
                self.settings.destination_concurrency,
                self.settings.send_timeout,
            ).deliver
        return await self.pipeline.run(refs, sink, summary)

    async def aclose(self) -> None:
        await self.delivery.close()
        await self.aws.close()

    def close_pool(self) -> None:
        self.pool.close()
