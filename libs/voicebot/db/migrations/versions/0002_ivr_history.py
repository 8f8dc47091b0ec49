"""IVR: outbound campaign calls remembered for callback routing, and inbound routing decisions.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(64)
PHONE = sa.String(20)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ivr_outbound_calls",
        sa.Column("call_id", ID, primary_key=True),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("phone", PHONE, nullable=False),
        sa.Column("dialed_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("answered", sa.Boolean, nullable=False),
        sa.Column("machine", sa.Boolean, nullable=False),
    )
    op.create_index("ix_ivr_outbound_calls_caller", "ivr_outbound_calls", ["tenant_id", "phone", "ended_at"])
    op.create_table(
        "ivr_routings",
        sa.Column("call_id", ID, primary_key=True),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("called_number", PHONE, nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("menu", ID, nullable=False),
        sa.Column("answer", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_ivr_routings_tenant_at", "ivr_routings", ["tenant_id", "at"])


def downgrade() -> None:
    for table in ("ivr_routings", "ivr_outbound_calls"):
        op.drop_table(table)
