"""scim provisioning health: open problems, and an index for the 24-hour counts

Revision ID: e4f5a6b7c8d9
Revises: d2e3f4a5b6c7
Create Date: 2026-12-06 22:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e4f5a6b7c8d9'
down_revision = 'd2e3f4a5b6c7'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('scim_problem',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('connector_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=True),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.Column('last_request_log_id', sa.Integer(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.Column('resolved_by_user_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['connector_id'], ['scim_connector.id'], name=op.f('fk_scim_problem_connector_id_scim_connector'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['resolved_by_user_id'], ['user.id'], name=op.f('fk_scim_problem_resolved_by_user_id_user'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scim_problem')),
    sa.UniqueConstraint('connector_id', 'kind', 'key', name='uq_scim_problem_connector_kind_key')
    )
    op.create_index(
        'ix_scim_problem_open', 'scim_problem', ['connector_id', 'resolved_at', 'last_seen_at']
    )
    # The health panel's last success and 24-hour counts: one index range per outcome.
    op.create_index(
        'ix_scim_request_log_health', 'scim_request_log', ['connector_id', 'outcome', 'created_at']
    )


def downgrade():
    op.drop_index('ix_scim_request_log_health', table_name='scim_request_log')
    op.drop_index('ix_scim_problem_open', table_name='scim_problem')
    op.drop_table('scim_problem')
