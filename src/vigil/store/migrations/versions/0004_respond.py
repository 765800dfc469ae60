"""respond and prevent: action and notifier settings, directed actions and their single-use approvals,
the outbox of outgoing updates, notifier threads, the prevention backlog and skills (runbooks)

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _space() -> sa.Column:
    return sa.Column("space_id", sa.String(63), sa.ForeignKey("spaces.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "respond_settings",
        sa.Column("space_id", sa.String(63), sa.ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("area", sa.String(20), primary_key=True),
        sa.Column("kind", sa.String(40), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "actions",
        sa.Column("id", sa.String(40), primary_key=True),
        _space(),
        sa.Column("investigation_id", sa.String(40), sa.ForeignKey("investigations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("hypothesis_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("args", sa.JSON, nullable=False),
        sa.Column("args_hash", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("proposed_by", sa.String(200), nullable=False),
        sa.Column("approved_by", sa.String(200), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("approved_at", TZ, nullable=True),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("verify", sa.JSON, nullable=False),
        sa.Column("recovery", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
    )
    op.create_index("ix_actions_space_inv", "actions", ["space_id", "investigation_id"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("action_id", sa.String(40), sa.ForeignKey("actions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("space_id", sa.String(63), nullable=False),
        sa.Column("investigation_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("args_hash", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("approved_by", sa.String(200), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
        sa.Column("used_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("token_hash", name="uq_approvals_token_hash"),
    )
    op.create_index("ix_approvals_action_id", "approvals", ["action_id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _space(),
        sa.Column("investigation_id", sa.String(40), nullable=True),
        sa.Column("notifier", sa.String(40), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("dedup_key", sa.String(300), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", TZ, nullable=False),
        sa.Column("claimed_until", TZ, nullable=True),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("sent_at", TZ, nullable=True),
        sa.Column("result", sa.JSON, nullable=False),
        sa.UniqueConstraint("dedup_key", name="uq_outbox_dedup_key"),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_at"])
    op.create_index("ix_outbox_space_id", "outbox", ["space_id"])
    op.create_index("ix_outbox_investigation_id", "outbox", ["investigation_id"])
    op.create_table(
        "threads",
        sa.Column("investigation_id", sa.String(40), sa.ForeignKey("investigations.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("notifier", sa.String(40), primary_key=True),
        sa.Column("space_id", sa.String(63), nullable=False),
        sa.Column("ref", sa.JSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_threads_space_id", "threads", ["space_id"])
    op.create_table(
        "backlog",
        sa.Column("id", sa.String(40), primary_key=True),
        _space(),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("severity", sa.Float, nullable=False),
        sa.Column("likelihood", sa.Float, nullable=False),
        sa.Column("detectability", sa.Float, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("investigations", sa.JSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("space_id", "key", name="uq_backlog_key"),
    )
    op.create_table(
        "skills",
        sa.Column("space_id", sa.String(63), sa.ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("match", sa.JSON, nullable=False),
        sa.Column("always", sa.Boolean, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for t in ("skills", "backlog", "threads", "outbox", "approvals", "actions", "respond_settings"):
        op.drop_table(t)
