"""The IVR's durable memory (an adapter): outbound campaign calls, for callback routing, and the routing
decision of each inbound call. Every write is idempotent, so a replayed event changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from services.ivr.routing import MissedCall, Route, normalise_number
from voicebot.db import utc_from_us
from voicebot.db.models import IvrOutboundCall, IvrRouting
from voicebot.events import CallLifecycle, Envelope

RECORDED = frozenset({CallLifecycle.DIALING, CallLifecycle.AMD_VERDICT, CallLifecycle.ENDED})


def _utc(at: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time here is UTC."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def worth_recording(env: Envelope, change: CallLifecycle) -> bool:
    return (
        change.direction == CallLifecycle.OUTBOUND
        and change.kind in RECORDED
        and bool(env.call_id and env.tenant_id and env.campaign_id and change.contact.phone_e164)
    )


def record(engine: Engine, env: Envelope, change: CallLifecycle) -> None:
    """Remember an outbound call: dialled (DIALING), machine-answered (AMD_VERDICT), ended (ENDED)."""
    at = utc_from_us(env.occurred_at_us) or datetime.now(UTC)
    with Session(engine) as session, session.begin():
        call = session.get(IvrOutboundCall, env.call_id)
        if call is None:
            call = IvrOutboundCall(
                call_id=env.call_id,
                tenant_id=env.tenant_id,
                campaign_id=env.campaign_id,
                phone=normalise_number(change.contact.phone_e164),
                answered=False,
                machine=False,
            )
            session.add(call)
        if change.kind == CallLifecycle.DIALING:
            call.dialed_at = call.dialed_at or at
        elif change.kind == CallLifecycle.AMD_VERDICT:
            call.machine = change.amd == CallLifecycle.MACHINE
        elif change.kind == CallLifecycle.ENDED:
            call.ended_at = at
            call.answered = change.answered


def missed_calls(
    engine: Engine, tenant: str, phone: str, since: datetime, limit: int = 20
) -> list[MissedCall]:
    """This tenant's outbound calls to `phone` that ended since `since` unanswered or on a machine."""
    query = (
        sa.select(IvrOutboundCall.campaign_id, IvrOutboundCall.ended_at)
        .where(
            IvrOutboundCall.tenant_id == tenant,
            IvrOutboundCall.phone == normalise_number(phone),
            IvrOutboundCall.ended_at >= since.astimezone(UTC),
            sa.or_(IvrOutboundCall.answered.is_(False), IvrOutboundCall.machine.is_(True)),
        )
        .order_by(IvrOutboundCall.ended_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [MissedCall(campaign, _utc(ended)) for campaign, ended in conn.execute(query)]  # type: ignore[arg-type]


def prune(engine: Engine, before: datetime) -> int:
    """Forget calls too old to be called back (and dials that never reported an end)."""
    old = sa.or_(
        IvrOutboundCall.ended_at < before,
        sa.and_(IvrOutboundCall.ended_at.is_(None), IvrOutboundCall.dialed_at < before),
    )
    with engine.begin() as conn:
        return conn.execute(sa.delete(IvrOutboundCall).where(old)).rowcount


def decided(engine: Engine, call_id: str) -> bool:
    with Session(engine) as session:
        return session.get(IvrRouting, call_id) is not None


def save_decision(
    engine: Engine,
    call_id: str,
    tenant: str,
    called: str,
    route: Route | None,
    menu: str = "",
    answer: str = "",
    at: datetime | None = None,
) -> bool:
    """Store where the call went (`route` None: the caller hung up in a menu); False if already stored."""
    with Session(engine) as session, session.begin():
        if session.get(IvrRouting, call_id) is not None:
            return False
        session.add(
            IvrRouting(
                call_id=call_id,
                tenant_id=tenant,
                called_number=called,
                rule=route.rule if route else "",
                kind=route.kind if route else "abandoned",
                target=(route.queue or route.target) if route else "",
                menu=menu,
                answer=answer,
                at=at or datetime.now(UTC),
            )
        )
    return True
