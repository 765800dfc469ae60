"""scale-out mode: jobs leased by `vigil worker` processes (dispatch time, cancel requests), journal
entries keyed by their step (a redelivered run does not write a step twice), console sessions shared
by every `vigil serve` replica

Revision ID: 0005_scaleout
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_scaleout"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.add_column(sa.Column("dispatched_at", TZ, nullable=True))
        b.add_column(sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()))
    with op.batch_alter_table("journal") as b:
        b.add_column(sa.Column("step", sa.String(40), nullable=True))
    # NULL steps (entries not written by a run: notes, alerts, operators) are never equal to each other
    op.create_index("uq_journal_step", "journal", ["investigation_id", "step"], unique=True)
    op.create_table(
        "console_sessions",
        sa.Column("key", sa.String(64), primary_key=True),          # sha256 of the cookie, never the cookie
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("tokens", sa.JSON, nullable=False),               # space -> token id
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("console_sessions")
    op.drop_index("uq_journal_step", "journal")
    with op.batch_alter_table("journal") as b:
        b.drop_column("step")
    with op.batch_alter_table("jobs") as b:
        b.drop_column("cancel_requested")
        b.drop_column("dispatched_at")
