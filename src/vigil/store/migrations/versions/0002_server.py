"""live server: API tokens, the durable investigation queue, incidents and their alerts, sources,
webhook integrations

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("space_id", sa.String(63), sa.ForeignKey("spaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revoked_at", TZ, nullable=True),
        sa.UniqueConstraint("hash", name="uq_tokens_hash"),
    )
    op.create_index("ix_tokens_space_id", "tokens", ["space_id"])
    op.create_table(
        "jobs",
        sa.Column("investigation_id", sa.String(40), sa.ForeignKey("investigations.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("space_id", sa.String(63), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("enqueued_at", TZ, nullable=False),
        sa.Column("not_before", TZ, nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
    )
    op.create_index("ix_jobs_space_id", "jobs", ["space_id"])
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_index("ix_jobs_enqueued_at", "jobs", ["enqueued_at"])
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("space_id", sa.String(63), sa.ForeignKey("spaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("group_key", sa.String(300), nullable=False),
        sa.Column("first_seen", TZ, nullable=False),
        sa.Column("last_seen", TZ, nullable=False),
        sa.Column("alert_count", sa.Integer, nullable=False),
        sa.Column("duplicates", sa.Integer, nullable=False),
        sa.Column("investigation_id", sa.String(40), sa.ForeignKey("investigations.id", ondelete="SET NULL"),
                  nullable=True),
    )
    op.create_index("ix_incidents_space_status", "incidents", ["space_id", "status"])
    op.create_table(
        "incident_alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(40), sa.ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("space_id", sa.String(63), nullable=False),
        sa.Column("fingerprint", sa.String(200), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("starts_at", TZ, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("last_received_at", TZ, nullable=False),
        sa.Column("receipts", sa.Integer, nullable=False),
        sa.Column("resource", sa.String(300), nullable=True),
        sa.Column("metric", sa.String(300), nullable=True),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("annotations", sa.JSON, nullable=False),
        sa.UniqueConstraint("incident_id", "fingerprint", name="uq_incident_alert_fp"),
    )
    op.create_index("ix_incident_alerts_space_fp", "incident_alerts", ["space_id", "fingerprint"])
    op.create_table(
        "sources",
        sa.Column("space_id", sa.String(63), sa.ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "integrations",
        sa.Column("space_id", sa.String(63), sa.ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", sa.String(30), primary_key=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("secret", sa.Text, nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for t in ("integrations", "sources", "incident_alerts", "incidents", "jobs", "tokens"):
        op.drop_table(t)
