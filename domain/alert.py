"""The Alert aggregate: one named condition the system monitor watches (a server down, a
consumer lagging, an agent gone silent), raised when it starts and cleared when it ends.

An alert's id derives from its name, so every raise and clear of "server-down:redis" lands on
the same aggregate and its history is the condition's history. Raising an active alert or
clearing an inactive one changes nothing: only transitions are events.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import Field

from domain.model import DomainEvent, Frozen, Payload

AGGREGATE = "alert"

_ALERT_IDS = uuid5(NAMESPACE_URL, "https://sutazai.dev/alert")

AlertName = str
"""`<check>:<subject>`, e.g. `server-down:redis`, `consumer-lag:document-indexer`."""


def alert_id_for(name: AlertName) -> UUID:
    """The alert's id: the same for every raise and clear of the condition `name`."""
    return uuid5(_ALERT_IDS, name)


class AlertSeverity(StrEnum):
    """How urgent the condition is."""

    WARNING = "warning"
    CRITICAL = "critical"


class RaiseAlert(Frozen):
    """The condition holds (nothing happens if the alert is already raised)."""

    alert_id: UUID
    name: str = Field(min_length=1, max_length=200, pattern=r"^[a-z][a-z0-9_.:-]*$")
    severity: AlertSeverity = AlertSeverity.WARNING
    summary: str = Field(min_length=1, max_length=2_000)
    details: Payload = Field(default_factory=dict)


class ClearAlert(Frozen):
    """The condition no longer holds (nothing happens unless the alert is raised)."""

    alert_id: UUID
    summary: str = Field(default="", max_length=2_000)


AlertCommand = RaiseAlert | ClearAlert


class AlertRaised(DomainEvent):
    """A watched condition started: what, how bad, and the figures that showed it."""

    alert_id: UUID
    name: str
    severity: AlertSeverity
    summary: str
    details: Payload


class AlertCleared(DomainEvent):
    """The condition ended."""

    summary: str


EVENT_TYPES: tuple[type[DomainEvent], ...] = (AlertRaised, AlertCleared)


class Alert(Frozen):
    """An alert's state: the last raise, and whether it is still active."""

    alert_id: UUID
    name: str
    severity: AlertSeverity
    summary: str
    details: Payload
    active: bool = True
    times_raised: int = 1


def decide(alert: Alert | None, command: AlertCommand) -> list[DomainEvent]:
    """Only transitions are events: raise what is not active, clear what is."""
    match command:
        case RaiseAlert():
            if alert is not None and alert.active:
                return []
            return [AlertRaised(**command.model_dump())]
        case ClearAlert(summary=summary):
            if alert is None or not alert.active:
                return []
            return [AlertCleared(summary=summary)]
    raise TypeError(f"not an alert command: {command!r}")  # pragma: no cover


def evolve(alert: Alert | None, event: DomainEvent) -> Alert:
    """The alert after one of its events."""
    match event:
        case AlertRaised():
            return Alert(
                **event.model_dump(), times_raised=(alert.times_raised + 1) if alert else 1
            )
        case AlertCleared():
            if alert is None:
                raise ValueError("AlertCleared before AlertRaised")
            return alert.model_copy(update={"active": False})
    raise TypeError(f"not an alert event: {event!r}")  # pragma: no cover
