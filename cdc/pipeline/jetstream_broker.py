"""The stream and the key-value bucket ``cdc setup`` creates in JetStream: what it would do
(:func:`plan_broker`, changes nothing) and doing it (:func:`apply_broker`, idempotent)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import nats.js.errors
from nats.js import api

from cdc.config import SinkSettings
from cdc.errors import BrokerError
from cdc.pipeline.jetstream import describe_servers, with_jetstream


def stream_config(settings: SinkSettings) -> api.StreamConfig:
    return api.StreamConfig(
        name=settings.stream,
        description="activity-cdc activity records",
        subjects=[f"{settings.subject_prefix}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.OLD,
        num_replicas=settings.replicas,
        duplicate_window=float(settings.duplicate_window_s),
        max_age=settings.max_age_days * 86_400 if settings.max_age_days else None,
    )


def bucket_config(settings: SinkSettings) -> api.KeyValueConfig:
    return api.KeyValueConfig(
        bucket=settings.bucket,
        description="activity-cdc checkpoints: what each source has stored in the stream",
        history=1,
        storage=api.StorageType.FILE,
        replicas=settings.replicas,
    )


@dataclass(frozen=True)
class BrokerStep:
    description: str  # imperative
    done: str
    request: dict[str, Any]  # the JSON the server receives (what --dry-run prints)
    kind: str  # "create_stream" | "update_stream" | "create_bucket"


@dataclass
class BrokerPlan:
    servers: str
    steps: list[BrokerStep] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def script(self) -> str:
        lines = [f"# JetStream at {self.servers}: {len(self.steps)} step(s)"]
        for number, step in enumerate(self.steps, 1):
            lines.append(f"# {number}. {step.description}")
            lines.append(json.dumps(step.request, indent=2, sort_keys=True))
        lines.extend(f"# already in place: {text}" for text in self.unchanged)
        return "\n".join(lines) + "\n"


# The stream settings setup keeps as configured, and what they are called in the messages.
_COMPARED = (
    ("subjects", "subjects"),
    ("num_replicas", "replicas"),
    ("duplicate_window", "duplicate window"),
    ("max_age", "max age"),
)


async def _plan(js: Any, settings: SinkSettings, servers: str) -> BrokerPlan:
    plan = BrokerPlan(servers)
    wanted = stream_config(settings)
    try:
        info = await js.stream_info(settings.stream)
    except nats.js.errors.NotFoundError:
        plan.steps.append(
            BrokerStep(
                f"create stream {settings.stream} (subjects {settings.subject_prefix}.>, "
                f"{settings.replicas} replica(s), duplicate window {settings.duplicate_window_s}s)",
                f"created stream {settings.stream}",
                wanted.as_dict(),
                "create_stream",
            )
        )
    else:
        current = info.config
        if current.retention != wanted.retention or current.storage != wanted.storage:
            raise BrokerError(
                f"stream {settings.stream} exists with retention {current.retention} and "
                f"storage {current.storage}; activity-cdc needs limits retention on file storage "
                "(JetStream cannot change these): choose another [sink] stream name"
            )
        differs = [
            label
            for attr, label in _COMPARED
            if _normal(getattr(current, attr)) != _normal(getattr(wanted, attr))
        ]
        if differs:
            plan.steps.append(
                BrokerStep(
                    f"update stream {settings.stream}: {', '.join(differs)} as configured",
                    f"updated stream {settings.stream} ({', '.join(differs)})",
                    wanted.as_dict(),
                    "update_stream",
                )
            )
        else:
            plan.unchanged.append(f"stream {settings.stream} is as configured")
    try:
        await js.key_value(settings.bucket)
    except nats.js.errors.BucketNotFoundError:
        plan.steps.append(
            BrokerStep(
                f"create key-value bucket {settings.bucket} ({settings.replicas} replica(s))",
                f"created key-value bucket {settings.bucket}",
                bucket_config(settings).as_dict(),
                "create_bucket",
            )
        )
    else:
        plan.unchanged.append(f"key-value bucket {settings.bucket} exists")
    return plan


def _normal(value: Any) -> Any:
    if isinstance(value, list):
        return sorted(value)
    if isinstance(value, float) and value == 0:
        return None
    return value


async def _apply(js: Any, settings: SinkSettings, plan: BrokerPlan) -> list[str]:
    done = []
    for step in plan.steps:
        try:
            if step.kind == "create_stream":
                await js.add_stream(stream_config(settings))
            elif step.kind == "update_stream":
                await js.update_stream(stream_config(settings))
            else:
                await js.create_key_value(bucket_config(settings))
        except nats.js.errors.APIError as exc:
            raise BrokerError(
                f'JetStream refused "{step.description}": {exc.description}; '
                'fix it and run "cdc setup" again'
            ) from None
        done.append(step.done)
    return done


def plan_broker(settings: SinkSettings) -> BrokerPlan:
    """What ``cdc setup`` would create or change in JetStream; changes nothing."""
    return with_jetstream(
        settings, lambda js: _plan(js, settings, describe_servers(settings.servers))
    )


def apply_broker(settings: SinkSettings) -> tuple[BrokerPlan, list[str]]:
    """Plan and apply on one connection; idempotent."""

    async def both(js: Any) -> tuple[BrokerPlan, list[str]]:
        plan = await _plan(js, settings, describe_servers(settings.servers))
        return plan, await _apply(js, settings, plan)

    return with_jetstream(settings, both)
