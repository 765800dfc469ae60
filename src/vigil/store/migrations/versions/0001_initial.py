"""initial state schema: spaces, investigations, journal, hypotheses, audit

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "spaces",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "investigations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("space_id", sa.String(63), sa.ForeignKey("spaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("trigger", sa.JSON, nullable=False),
        sa.Column("window_start", TZ, nullable=False),
        sa.Column("window_end", TZ, nullable=False),
        sa.Column("onset", TZ, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
    )
    op.create_index("ix_investigations_space_id", "investigations", ["space_id"])
    op.create_index("ix_investigations_status", "investigations", ["status"])
    op.create_index("ix_investigations_created_at", "investigations", ["created_at"])
    op.create_table(
        "journal",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("investigation_id", sa.String(40), sa.ForeignKey("investigations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("ts", TZ, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("rows", sa.Integer, nullable=True),
        sa.Column("data", sa.JSON, nullable=False),
        sa.UniqueConstraint("investigation_id", "seq", name="uq_journal_seq"),
    )
    op.create_table(
        "hypotheses",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("investigation_id", sa.String(40), sa.ForeignKey("investigations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("fault_kind", sa.String(30), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("why", sa.Text, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("path", sa.JSON, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_hypotheses_inv_rank", "hypotheses", ["investigation_id", "rank"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", TZ, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("space_id", sa.String(63), nullable=True),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_ts", "audit", ["ts"])
    op.create_index("ix_audit_space_id", "audit", ["space_id"])


def downgrade() -> None:
    for t in ("audit", "hypotheses", "journal", "investigations", "spaces"):
        op.drop_table(t)
