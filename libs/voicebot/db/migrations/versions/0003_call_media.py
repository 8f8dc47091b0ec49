"""Calls: where the recording is, what voicemail detection said, who the call was handed to.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:  # batch: SQLite cannot ALTER ADD with defaults otherwise
        batch.add_column(sa.Column("recording_uri", sa.String(500), nullable=False, server_default=""))
        batch.add_column(sa.Column("amd", sa.String(16), nullable=False, server_default=""))
        batch.add_column(sa.Column("transfer_target", sa.String(200), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("transfer_target")
        batch.drop_column("amd")
        batch.drop_column("recording_uri")
