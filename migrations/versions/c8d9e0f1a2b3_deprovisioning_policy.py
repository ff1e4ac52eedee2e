"""deprovisioning policy: the SCIM connector says what `active: false` and DELETE do
("remove", today's behaviour and the default for every existing connector, or "suspend"
for N days); a membership carries its removal date and the teams a DELETE took it out of
(SPEC F12)

Revision ID: c8d9e0f1a2b3
Revises: b7c8d9e0f1a2
Create Date: 2026-12-07 04:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c8d9e0f1a2b3'
down_revision = 'b7c8d9e0f1a2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('scim_connector', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('deprovision_mode', sa.String(length=10), server_default='remove', nullable=False)
        )
        batch_op.add_column(
            sa.Column('suspend_days', sa.Integer(), server_default='30', nullable=False)
        )
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.add_column(sa.Column('removal_due_at', sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column('suspended_team_ids', sa.JSON(none_as_null=True), nullable=True)
        )
        batch_op.create_index('ix_membership_removal_due_at', ['removal_due_at'], unique=False)


def downgrade():
    # The old schema has no suspended members: what the IdP deleted is removed now (the
    # "remove" policy, applied early; they hold no seat). Members only deactivated stay
    # deactivated, without a removal date.
    # (Child rows by hand: batch mode runs SQLite without foreign keys, so no cascade.)
    suspended = "(SELECT id FROM membership WHERE source = 'suspended')"
    op.execute(f"DELETE FROM member_email WHERE membership_id IN {suspended}")
    op.execute(f"DELETE FROM team_member WHERE membership_id IN {suspended}")
    op.execute("DELETE FROM membership WHERE source = 'suspended'")
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.drop_index('ix_membership_removal_due_at')
        batch_op.drop_column('suspended_team_ids')
        batch_op.drop_column('removal_due_at')
    with op.batch_alter_table('scim_connector', schema=None) as batch_op:
        batch_op.drop_column('suspend_days')
        batch_op.drop_column('deprovision_mode')
