"""domain capture and domain lock per verified domain, the account's "SCIM only" switch,
and pending self sign-ups (SPEC F13, issue 20)

Revision ID: 0a1b2c3d4e5f
Revises: f1a2b3c4d5e6
Create Date: 2026-12-07 05:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0a1b2c3d4e5f'
down_revision = 'f1a2b3c4d5e6'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('domain') as batch:
        batch.add_column(
            sa.Column('capture', sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column('locked', sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table('account') as batch:
        batch.add_column(
            sa.Column('scim_only', sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        'signup',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('email_key', sa.String(length=320), nullable=False),
        sa.Column('passphrase_hash', sa.String(length=200), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('used_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_index('ix_signup_email_key', 'signup', ['email_key', 'created_at'])


def downgrade():
    op.drop_index('ix_signup_email_key', table_name='signup')
    op.drop_table('signup')
    with op.batch_alter_table('account') as batch:
        batch.drop_column('scim_only')
    with op.batch_alter_table('domain') as batch:
        batch.drop_column('locked')
        batch.drop_column('capture')
