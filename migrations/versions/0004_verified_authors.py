"""Verified authors: each message keeps its author's user_id (a token's sub).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("user_id", sa.String(64), nullable=True))


def downgrade():
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("user_id")
