"""scim request log: the client address of each request

Revision ID: ae1f2b3c4d5e
Revises: 9d3e4f5a6b7c
Create Date: 2026-11-28 22:05:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'ae1f2b3c4d5e'
down_revision = '9d3e4f5a6b7c'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('scim_request_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('remote_addr', sa.String(length=45), nullable=True))


def downgrade():
    with op.batch_alter_table('scim_request_log', schema=None) as batch_op:
        batch_op.drop_column('remote_addr')
