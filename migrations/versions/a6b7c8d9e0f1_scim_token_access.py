"""scim token access: an IP allow-list and a read-only scope per token (SPEC F11); every
existing token keeps working from any address, reading and writing

Revision ID: a6b7c8d9e0f1
Revises: f5a6b7c8d9e0
Create Date: 2026-12-07 01:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a6b7c8d9e0f1'
down_revision = 'f5a6b7c8d9e0'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('scim_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('allowed_networks', sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column('read_only', sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade():
    # A restricted token would become unrestricted: the old schema can't say otherwise,
    # so such tokens are revoked (refused from now on) rather than widened.
    op.execute(
        "UPDATE scim_token SET revoked_at = CURRENT_TIMESTAMP, token_encrypted = NULL, "
        "previous_token_hash = NULL, previous_valid_until = NULL "
        "WHERE revoked_at IS NULL AND (allowed_networks IS NOT NULL OR read_only)"
    )
    with op.batch_alter_table('scim_token', schema=None) as batch_op:
        batch_op.drop_column('read_only')
        batch_op.drop_column('allowed_networks')
