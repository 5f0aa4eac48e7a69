"""Messages remember their client_id; receipts answer a client's retries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("client_id", sa.String(length=64), nullable=True))
    op.create_table(
        "receipts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column(
            "message_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel"],
            ["channels.name"],
            name=op.f("fk_receipts_channel_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipts")),
    )
    op.create_index(
        "ix_receipts_channel_client_id",
        "receipts",
        ["channel", "client_id"],
        unique=True,
    )
    op.create_index(
        op.f("ix_receipts_created_at"), "receipts", ["created_at"], unique=False
    )


def downgrade():
    op.drop_index(op.f("ix_receipts_created_at"), table_name="receipts")
    op.drop_index("ix_receipts_channel_client_id", table_name="receipts")
    op.drop_table("receipts")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("client_id")
