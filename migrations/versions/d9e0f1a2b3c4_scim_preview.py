"""scim preview: a connector's mode (live or preview) and what the IdP's writes in
preview would do (SPEC F12, dry run before go-live)

Revision ID: d9e0f1a2b3c4
Revises: c8d9e0f1a2b3
Create Date: 2026-12-07 04:10:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = 'd9e0f1a2b3c4'
down_revision = 'c8d9e0f1a2b3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('scim_connector') as batch:
        batch.add_column(
            sa.Column('mode', sa.String(length=10), nullable=False, server_default='live')
        )
    document = sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), 'postgresql'
    )
    op.create_table(
        'scim_preview',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('connector_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('scim_id', sa.String(length=64), nullable=True),
        sa.Column('user_name_key', sa.String(length=512), nullable=True),
        sa.Column('external_id', sa.String(length=512), nullable=True),
        sa.Column('display_name_key', sa.String(length=512), nullable=True),
        sa.Column('email_key', sa.String(length=320), nullable=True),
        sa.Column('document', document, nullable=True),
        sa.Column('outcome', sa.String(length=20), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=True),
        sa.Column('needs_seat', sa.Boolean(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['connector_id'], ['scim_connector.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('connector_id', 'scim_id', name='uq_scim_preview_connector_scim_id'),
    )
    op.create_index(
        'ix_scim_preview_user_name', 'scim_preview', ['connector_id', 'kind', 'user_name_key']
    )


def downgrade():
    # Nothing in a preview was applied: dropping it loses only the forecast.
    op.drop_index('ix_scim_preview_user_name', table_name='scim_preview')
    op.drop_table('scim_preview')
    with op.batch_alter_table('scim_connector') as batch:
        batch.drop_column('mode')
