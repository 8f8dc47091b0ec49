"""Alembic environment: runs on the connection `voicebot.db.upgrade` hands over (or a URL from -x url=)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from voicebot.db.models import Base

target_metadata = Base.metadata


def run() -> None:
    conn = context.config.attributes.get("connection")
    if conn is None:
        url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
            "sqlalchemy.url"
        )
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
        engine.dispose()
        return
    context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
