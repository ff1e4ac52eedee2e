"""invite controls: which domains an account's invitations may go to (SPEC F13):
any (the behaviour before), verified domains only, or a custom list

Revision ID: e0f1a2b3c4d5
Revises: d9e0f1a2b3c4
Create Date: 2026-12-07 04:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e0f1a2b3c4d5'
down_revision = 'd9e0f1a2b3c4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('account') as batch:
        batch.add_column(
            sa.Column('invite_policy', sa.String(length=10), nullable=False, server_default='any')
        )
        batch.add_column(sa.Column('invite_domains', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('account') as batch:
        batch.drop_column('invite_domains')
        batch.drop_column('invite_policy')
