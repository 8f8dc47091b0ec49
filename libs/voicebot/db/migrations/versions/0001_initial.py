"""The first schema: processed_events, calls, turns, outcomes, compliance_decisions, dnc.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(64)
PHONE = sa.String(20)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "processed_events",
        sa.Column("event_id", ID, primary_key=True),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("topic", sa.String(120), nullable=False),
        sa.Column("processed_at", TS, nullable=False),
    )
    op.create_index("ix_processed_events_tenant_id", "processed_events", ["tenant_id"])
    op.create_table(
        "calls",
        sa.Column("call_id", ID, primary_key=True),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("contact_id", ID, nullable=False),
        sa.Column("phone", PHONE, nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("sip_code", sa.Integer, nullable=False),
        sa.Column("sip_reason", sa.String(200), nullable=False),
        sa.Column("answered", sa.Boolean, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("answered_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("media_node", sa.String(120), nullable=False),
        sa.Column("hangup_by", sa.String(16), nullable=False),
    )
    op.create_index("ix_calls_tenant_campaign", "calls", ["tenant_id", "campaign_id"])
    op.create_table(
        "turns",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("call_id", ID, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("speaker", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("chunks", sa.JSON, nullable=False),
        sa.Column("started_us", sa.BigInteger, nullable=False),
        sa.Column("ended_us", sa.BigInteger, nullable=False),
        sa.Column("turn_id", ID, nullable=False),
        sa.Column("utterance_id", ID, nullable=False),
        sa.Column("rewritten", sa.Boolean, nullable=False),
        sa.Column("latency", sa.JSON, nullable=False),
        sa.UniqueConstraint(
            "tenant_id", "call_id", "speaker", "turn_id", "utterance_id", name="uq_turns_key"
        ),
    )
    op.create_index("ix_turns_call", "turns", ["tenant_id", "call_id"])
    op.create_table(
        "outcomes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("call_id", ID, nullable=False),
        sa.Column("contact_id", ID, nullable=False),
        sa.Column("phone", PHONE, nullable=False),
        sa.Column("disposition", sa.String(32), nullable=False),
        sa.Column("opt_out", sa.Boolean, nullable=False),
        sa.Column("slots", sa.JSON, nullable=False),
        sa.Column("callback_at", TS, nullable=True),
        sa.Column("turns", sa.Integer, nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_outcomes_tenant_campaign", "outcomes", ["tenant_id", "campaign_id"])
    op.create_index("ix_outcomes_call", "outcomes", ["call_id"])
    op.create_table(
        "compliance_decisions",
        sa.Column("decision_id", ID, primary_key=True),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("subject", sa.String(16), nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("ruleset_version", sa.String(64), nullable=False),
        sa.Column("contact_id", ID, nullable=False),
        sa.Column("phone", PHONE, nullable=False),
        sa.Column("call_id", ID, nullable=False),
        sa.Column("turn_id", ID, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("retry_at", TS, nullable=True),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_decisions_tenant_phone", "compliance_decisions", ["tenant_id", "phone"])
    op.create_table(
        "dnc",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("phone", PHONE, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "phone", name="uq_dnc_tenant_phone"),
    )


def downgrade() -> None:
    for table in ("dnc", "compliance_decisions", "outcomes", "turns", "calls", "processed_events"):
        op.drop_table(table)
