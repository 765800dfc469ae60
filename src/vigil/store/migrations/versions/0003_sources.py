"""sources: the last check of each registered source (when, whether it answered, its one-line message)

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable columns: SQLite adds them in place, no table rebuild needed
    op.add_column("sources", sa.Column("last_check_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("sources", sa.Column("last_check_ok", sa.Boolean, nullable=True))
    op.add_column("sources", sa.Column("last_check_message", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        for col in ("last_check_message", "last_check_ok", "last_check_at"):
            batch.drop_column(col)
