"""A tunable's default is written twice, in `Settings` and in the policy that uses it; they agree.

`runtime/settings.py` cannot take its defaults from the policies: it would then import the command
bus and the agents, and every server wrapper and CLI start would pay for it. This test is the one
place that ties each pair, so a default changed on one side only fails here.
"""

import dataclasses

import pytest

from commands.bus import BusPolicy
from commands.preparation import Limits
from eventstore.streams import StreamLayout
from handlers.code_assistant import CodeAssistant
from handlers.consumers import Delivery
from handlers.model_port import ModelPolicy
from handlers.task_coordinator import CoordinatorPolicy
from projections.runtime import ProjectionRunner
from runtime.settings import Settings

SAME_DEFAULT: dict[str, tuple[type, str]] = {
    "model_timeout": (ModelPolicy, "timeout"),
    "model_attempts": (ModelPolicy, "attempts"),
    "model_concurrency": (ModelPolicy, "concurrency"),
    "model_breaker_threshold": (ModelPolicy, "breaker_threshold"),
    "model_breaker_seconds": (ModelPolicy, "breaker_seconds"),
    "model_max_tokens": (CodeAssistant, "max_tokens"),
    "heartbeat_ttl": (StreamLayout, "heartbeat_ttl"),
    "duplicate_window": (StreamLayout, "duplicate_window"),
    "projection_lease_seconds": (StreamLayout, "lease_ttl"),
    "agent_attempts": (Delivery, "attempts"),
    "agent_ack_wait": (Delivery, "ack_wait"),
    "coordinator_sweep_seconds": (CoordinatorPolicy, "sweep_every"),
    "command_attempts": (BusPolicy, "max_attempts"),
    "snapshot_every": (BusPolicy, "snapshot_every"),
    "remembered_commands": (BusPolicy, "remembered_commands"),
    "max_payload_bytes": (Limits, "max_payload_bytes"),
    "max_document_bytes": (Limits, "max_document_bytes"),
    "inline_document_bytes": (Limits, "inline_document_bytes"),
    "projection_batch_size": (ProjectionRunner, "batch_size"),
}


@pytest.mark.parametrize("setting", sorted(SAME_DEFAULT))
def test_a_setting_defaults_to_what_its_policy_defaults_to(setting: str) -> None:
    policy, field = SAME_DEFAULT[setting]
    (declared,) = (f for f in dataclasses.fields(policy) if f.name == field)
    assert Settings.model_fields[setting].default == declared.default, (setting, policy.__name__)
