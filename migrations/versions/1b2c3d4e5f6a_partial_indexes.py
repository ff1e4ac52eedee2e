"""partial indexes for three columns that are empty on most rows: a membership's invitation
token (set only while an invitation waits), its removal date (set only while a suspended
member waits for removal) and an audit event's actor (none for the IdP's events). Only the
rows that hold a value are indexed, so a SCIM create no longer writes three index
entries that no lookup can find: every lookup on these columns compares a value
(=, <=), which a NULL never matches.

Revision ID: 1b2c3d4e5f6a
Revises: 0a1b2c3d4e5f
Create Date: 2026-12-07 22:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '1b2c3d4e5f6a'
down_revision = '0a1b2c3d4e5f'
branch_labels = None
depends_on = None

ACTOR_COLUMNS = ['account_id', 'actor_user_id', 'created_at', 'id']


def _where(column: str) -> dict:
    condition = sa.text(f'{column} IS NOT NULL')
    return {'sqlite_where': condition, 'postgresql_where': condition}


def upgrade():
    # A UNIQUE constraint of the table (SQLite rebuilds the table to drop it), then the
    # same uniqueness as a partial unique index: NULLs were never compared anyway.
    with op.batch_alter_table('membership') as batch:
        batch.drop_constraint('uq_membership_invitation_token_hash', type_='unique')
    op.create_index(
        'uq_membership_invitation_token_hash', 'membership', ['invitation_token_hash'],
        unique=True, **_where('invitation_token_hash'),
    )
    op.drop_index('ix_membership_removal_due_at', table_name='membership')
    op.create_index(
        'ix_membership_removal_due_at', 'membership', ['removal_due_at'],
        **_where('removal_due_at'),
    )
    op.drop_index('ix_audit_event_account_actor', table_name='audit_event')
    op.create_index(
        'ix_audit_event_account_actor', 'audit_event', ACTOR_COLUMNS,
        **_where('actor_user_id'),
    )


def downgrade():
    op.drop_index('ix_audit_event_account_actor', table_name='audit_event')
    op.create_index('ix_audit_event_account_actor', 'audit_event', ACTOR_COLUMNS)
    op.drop_index('ix_membership_removal_due_at', table_name='membership')
    op.create_index('ix_membership_removal_due_at', 'membership', ['removal_due_at'])
    op.drop_index('uq_membership_invitation_token_hash', table_name='membership')
    with op.batch_alter_table('membership') as batch:
        batch.create_unique_constraint(
            'uq_membership_invitation_token_hash', ['invitation_token_hash']
        )
