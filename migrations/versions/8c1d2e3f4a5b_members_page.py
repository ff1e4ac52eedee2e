"""members page: last sign-in, the email sort index, manual members' email and name copied

Revision ID: 8c1d2e3f4a5b
Revises: 471ac369b060
Create Date: 2026-11-28 18:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '8c1d2e3f4a5b'
down_revision = '471ac369b060'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_sign_in_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('membership', schema=None) as batch_op:
        # With the id: the list's order (email, id), walked index-only on PostgreSQL too.
        batch_op.create_index('ix_membership_account_email', ['account_id', 'email', 'id'], unique=False)
    # Manual members had their email and name only on their person: copy them, as new
    # ones get them, so the Members page searches and sorts the membership table alone.
    for column in ("email", "display_name"):
        op.execute(
            f'UPDATE membership SET {column} = (SELECT "user".{column} FROM "user" '
            'WHERE "user".id = membership.user_id) '
            f"WHERE {column} IS NULL AND user_id IS NOT NULL AND source = 'manual'"
        )


def downgrade():
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.drop_index('ix_membership_account_email')
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('last_sign_in_at')
