"""Channels keep their retained-message count and are listed by an index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("channels") as batch:
        batch.add_column(
            sa.Column("message_count", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE channels SET message_count ="
        " (SELECT count(*) FROM messages WHERE messages.channel = channels.name)"
    )
    op.create_index(
        "ix_channels_last_message_at_name",
        "channels",
        ["last_message_at", "name"],
        unique=False,
    )


def downgrade():
    op.drop_index("ix_channels_last_message_at_name", table_name="channels")
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("message_count")
