"""How each event changes the system of record, inside one transaction with its idempotency row.

`apply` writes `processed_events(event_id)` and the effect in the SAME transaction: a replayed event
finds its id and changes nothing; two replicas racing on one event collide on the primary key, and
the loser's retry then skips it. Bot turns are one row per turn_id: approved sentences are kept by seq
in `chunks` and joined into `text`, so the transcript reads one bot reply per row.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from voicebot.db import Call, DecisionRow, OutcomeRow, ProcessedEvent, Turn, upsert_dnc, utc_from_us
from voicebot.events import (
    ApprovedReply,
    CallLifecycle,
    ComplianceDecision,
    Envelope,
    Outcome,
    Transcript,
)
from voicebot.timeline import segments, truncate_at_first_audio, voice_to_voice

Effect = Callable[[Session], None]


def apply(engine: Engine, topic: str, env: Envelope, effect: Effect) -> bool:
    """Run `effect` once per event_id; False when the event was stored before (a replay)."""
    with Session(engine) as session, session.begin():
        if session.get(ProcessedEvent, env.event_id) is not None:
            return False
        session.add(
            ProcessedEvent(
                event_id=env.event_id, tenant_id=env.tenant_id, topic=topic, processed_at=datetime.now(UTC)
            )
        )
        session.flush()
        effect(session)
    return True


def _call(session: Session, env: Envelope, change: CallLifecycle | None = None) -> Call:
    call = session.get(Call, env.call_id)
    if call is None:
        call = Call(
            call_id=env.call_id,
            tenant_id=env.tenant_id,
            campaign_id=env.campaign_id,
            contact_id=env.contact_id,
            phone="",
            direction="",
            state="",
            attempt=0,
            sip_code=0,
            sip_reason="",
            answered=False,
            started_at=utc_from_us(env.occurred_at_us),
            duration_s=0.0,
            media_node=env.media_node,
            hangup_by="",
        )
        session.add(call)
    if change is not None:
        contact = change.contact
        # an inbound call is bound to its campaign (and tenant) by the IVR after it was answered
        call.campaign_id = call.campaign_id or env.campaign_id
        call.tenant_id = call.tenant_id or env.tenant_id
        call.contact_id = call.contact_id or contact.contact_id
        call.phone = call.phone or contact.phone_e164
        call.media_node = call.media_node or env.media_node
        call.attempt = call.attempt or change.attempt
        if change.direction and not call.direction:
            call.direction = CallLifecycle.Direction.Name(change.direction).lower()
    return call


def _turn(session: Session, env: Envelope, speaker: str, turn_id: str = "", utterance_id: str = "") -> Turn:
    """The row of one turn, created on first sight (seq = its place in the call's arrival order)."""
    key = {
        "tenant_id": env.tenant_id,
        "call_id": env.call_id,
        "speaker": speaker,
        "turn_id": turn_id,
        "utterance_id": utterance_id,
    }
    turn = session.scalars(sa.select(Turn).filter_by(**key)).first()
    if turn is None:
        last = session.scalar(
            sa.select(sa.func.max(Turn.seq)).where(
                Turn.tenant_id == env.tenant_id, Turn.call_id == env.call_id
            )
        )
        turn = Turn(
            **key,
            seq=(last or 0) + 1,
            text="",
            chunks={},
            started_us=0,
            ended_us=0,
            rewritten=False,
            latency={},
        )
        session.add(turn)
        session.flush()
    return turn


# The lifecycle kinds that are a call's state (the others are events within a state).
STATE_KINDS = frozenset(
    {
        CallLifecycle.DIALING,
        CallLifecycle.RINGING,
        CallLifecycle.ANSWERED,
        CallLifecycle.BRIDGED,
        CallLifecycle.TRANSFERRED,
        CallLifecycle.ENDED,
    }
)


def lifecycle(env: Envelope, change: CallLifecycle) -> Effect:
    def effect(session: Session) -> None:
        call = _call(session, env, change)
        at = utc_from_us(env.occurred_at_us)
        kind = change.kind
        if kind == CallLifecycle.PLAYBACK_STARTED:
            turn = _turn(session, env, "bot", turn_id=change.turn_id)
            marks = truncate_at_first_audio(env.marks)
            v2v = voice_to_voice(marks)
            turn.started_us = env.occurred_at_us
            turn.latency = {
                "marks": [[m.stage, m.at_us] for m in marks],
                "segments": [[s.name, round(s.seconds, 6)] for s in segments(marks)],
                "voice_to_voice_s": round(v2v, 6) if v2v is not None else None,
                "playback_started_us": env.occurred_at_us,
            }
            return
        if kind == CallLifecycle.PLAYBACK_FINISHED:
            _turn(session, env, "bot", turn_id=change.turn_id).ended_us = env.occurred_at_us
            return
        if kind == CallLifecycle.BARGE_IN:
            turn = _turn(session, env, "bot", turn_id=change.turn_id)
            turn.latency = {**turn.latency, "barge_in_after_ms": change.played_ms}
            return
        if kind == CallLifecycle.DTMF:
            turn = _turn(session, env, "customer", utterance_id=env.event_id)
            turn.text = f"[keypad] {change.dtmf}"
            turn.started_us = turn.ended_us = env.occurred_at_us
            return
        if kind == CallLifecycle.RECORDING_READY:
            call.recording_uri = change.recording_uri
            return
        if kind == CallLifecycle.AMD_VERDICT:
            call.amd = CallLifecycle.Amd.Name(change.amd).lower()
            return
        if kind in (CallLifecycle.TRANSFERRED, CallLifecycle.TRANSFER_FAILED, CallLifecycle.BRIDGED):
            call.transfer_target = change.transfer_target
        if kind not in STATE_KINDS:
            return  # speech onsets, beeps, failed transfers: the call's state stays what it was
        if call.state == "ended" and kind != CallLifecycle.ENDED:
            return  # a late event never reopens an ended call
        call.state = CallLifecycle.Kind.Name(kind).lower()
        if kind == CallLifecycle.RINGING and change.sip_code:
            call.sip_code = change.sip_code
        elif kind == CallLifecycle.ANSWERED:
            call.answered = True
            call.answered_at = call.answered_at or at
        elif kind == CallLifecycle.ENDED:
            call.answered = call.answered or change.answered
            call.ended_at = at
            call.sip_code = change.sip_code or call.sip_code
            call.sip_reason = change.sip_reason
            call.duration_s = change.duration_s
            call.hangup_by = change.hangup_by

    return effect


def customer_turn(env: Envelope, said: Transcript, text: str) -> Effect:
    def effect(session: Session) -> None:
        if not text.strip():
            return
        turn = _turn(session, env, "customer", utterance_id=said.utterance_id or env.event_id)
        turn.text = text
        turn.started_us = said.speech_start_us or env.occurred_at_us
        turn.ended_us = said.speech_end_us

    return effect


def bot_turn(env: Envelope, reply: ApprovedReply, text: str) -> Effect:
    def effect(session: Session) -> None:
        turn = _turn(session, env, "bot", turn_id=reply.turn_id)
        chunks = {**turn.chunks, str(reply.seq): text}
        turn.chunks = chunks
        turn.text = " ".join(chunks[k] for k in sorted(chunks, key=int) if chunks[k])
        turn.rewritten = turn.rewritten or reply.rewritten
        turn.started_us = turn.started_us or env.occurred_at_us

    return effect


def outcome(env: Envelope, result: Outcome) -> Effect:
    def effect(session: Session) -> None:
        contact = result.contact
        session.add(
            OutcomeRow(
                tenant_id=env.tenant_id,
                campaign_id=env.campaign_id,
                call_id=env.call_id,
                contact_id=contact.contact_id or env.contact_id,
                phone=contact.phone_e164,
                disposition=result.disposition,
                opt_out=result.opt_out,
                slots=dict(result.slots),
                callback_at=utc_from_us(result.callback_at_us),
                turns=result.turns,
                at=utc_from_us(env.occurred_at_us) or datetime.now(UTC),
            )
        )
        if result.opt_out and contact.phone_e164:
            upsert_dnc(session.connection(), env.tenant_id, contact.phone_e164, "opt_out")

    return effect


def decision(env: Envelope, d: ComplianceDecision) -> Effect:
    def effect(session: Session) -> None:
        if session.get(DecisionRow, d.decision_id) is not None:
            return
        session.add(
            DecisionRow(
                decision_id=d.decision_id,
                tenant_id=env.tenant_id,
                campaign_id=env.campaign_id,
                subject=ComplianceDecision.Subject.Name(d.subject).lower(),
                allowed=d.allowed,
                rule=d.rule,
                reason=d.reason,
                ruleset_version=d.ruleset_version,
                contact_id=d.contact.contact_id or env.contact_id,
                phone=d.contact.phone_e164,
                call_id=env.call_id,
                turn_id=d.turn_id,
                attempt=d.attempt,
                retry_at=utc_from_us(d.retry_at_us),
                at=utc_from_us(env.occurred_at_us) or datetime.now(UTC),
            )
        )

    return effect
