"""webhook secrets encrypted at rest: the secrets stored in clear before are encrypted with the key from
VIGIL_SECRET_KEY / VIGIL_SECRET_KEY_FILE (see vigil.store.crypto); the key is read only if there are some

Revision ID: 0006_sealed_secrets
Revises: 0005_scaleout
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_sealed_secrets"
down_revision = "0005_scaleout"
branch_labels = None
depends_on = None

integrations = sa.table("integrations", sa.column("space_id", sa.String), sa.column("kind", sa.String),
                        sa.column("secret", sa.Text))


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(integrations.c.space_id, integrations.c.kind, integrations.c.secret).where(
        integrations.c.secret.is_not(None), integrations.c.secret != "",
        sa.not_(integrations.c.secret.like("fernet:%")))).all()
    if not rows:
        return
    from vigil.store.crypto import sealer_from_env
    sealer = sealer_from_env()
    for space_id, kind, secret in rows:
        conn.execute(sa.update(integrations).where(integrations.c.space_id == space_id, integrations.c.kind == kind)
                     .values(secret=sealer.seal(secret)))


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(integrations.c.space_id, integrations.c.kind, integrations.c.secret).where(
        integrations.c.secret.like("fernet:%"))).all()
    if not rows:
        return
    from vigil.store.crypto import sealer_from_env
    sealer = sealer_from_env()
    for space_id, kind, secret in rows:
        conn.execute(sa.update(integrations).where(integrations.c.space_id == space_id, integrations.c.kind == kind)
                     .values(secret=sealer.open(secret)))
