"""Moderation: edits and deletes numbered per channel, slow mode, bans and
an audit log.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("channels") as batch:
        batch.add_column(
            sa.Column("last_change", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("slow_mode", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("edited_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("change", sa.Integer()))
    op.create_table(
        "bans",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(500)),
        sa.Column("by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_bans")),
    )
    op.create_index(op.f("ix_bans_until"), "bans", ["until"])
    op.create_table(
        "audit_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(64)),
        sa.Column("seq", sa.Integer()),
        sa.Column("user_id", sa.String(64)),
        sa.Column("detail", sa.Text()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])


def downgrade():
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(op.f("ix_bans_until"), table_name="bans")
    op.drop_table("bans")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("change")
        batch.drop_column("deleted_at")
        batch.drop_column("edited_at")
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("slow_mode")
        batch.drop_column("last_change")
