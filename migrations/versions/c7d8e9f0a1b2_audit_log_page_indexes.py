"""audit log page: keyset indexes on (created_at, id), by account, action and actor

Revision ID: c7d8e9f0a1b2
Revises: b1c2d3e4f5a6
Create Date: 2026-12-06 20:30:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'c7d8e9f0a1b2'
down_revision = 'b1c2d3e4f5a6'
branch_labels = None
depends_on = None


def upgrade():
    # Pages are read newest first on (created_at, id): each index ends in both, so a page
    # (the first, a filtered one, or one deep in a million events) is an index range.
    op.drop_index('ix_audit_event_account_created', table_name='audit_event')
    op.create_index(
        'ix_audit_event_account_created', 'audit_event', ['account_id', 'created_at', 'id']
    )
    op.create_index(
        'ix_audit_event_account_action', 'audit_event',
        ['account_id', 'action', 'created_at', 'id'],
    )
    op.create_index(
        'ix_audit_event_account_actor', 'audit_event',
        ['account_id', 'actor_user_id', 'created_at', 'id'],
    )


def downgrade():
    op.drop_index('ix_audit_event_account_actor', table_name='audit_event')
    op.drop_index('ix_audit_event_account_action', table_name='audit_event')
    op.drop_index('ix_audit_event_account_created', table_name='audit_event')
    op.create_index(
        'ix_audit_event_account_created', 'audit_event', ['account_id', 'created_at']
    )
