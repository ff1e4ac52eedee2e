"""team rules: a SCIM-managed team's members get a role and licence use by the owner's
ordered rules (SPEC F12), and the progress of re-applying them to every member

Revision ID: b7c8d9e0f1a2
Revises: a6b7c8d9e0f1
Create Date: 2026-12-07 01:45:00

"""
from alembic import op
import sqlalchemy as sa



# revision identifiers, used by Alembic.
revision = 'b7c8d9e0f1a2'
down_revision = 'a6b7c8d9e0f1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'team_rule',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('team_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('licensed', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['team_id'], ['team.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('account_id', 'team_id', name='uq_team_rule_account_team'),
    )
    op.create_index('ix_team_rule_account_position', 'team_rule', ['account_id', 'position'])
    op.create_index('ix_team_rule_team_id', 'team_rule', ['team_id'])
    op.create_table(
        'team_rule_run',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('running_generation', sa.Integer(), nullable=False),
        sa.Column('applied_generation', sa.Integer(), nullable=False),
        sa.Column('last_id', sa.Integer(), nullable=False),
        sa.Column('done', sa.Integer(), nullable=False),
        sa.Column('total', sa.Integer(), nullable=False),
        sa.Column('unlicensed', sa.Integer(), nullable=False),
        sa.Column('requested_at', sa.DateTime(), nullable=True),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id'),
    )


def downgrade():
    # Roles and licences the rules gave stay as they are: they are ordinary values of
    # the membership, which the old schema keeps.
    op.drop_table('team_rule_run')
    op.drop_index('ix_team_rule_team_id', table_name='team_rule')
    op.drop_index('ix_team_rule_account_position', table_name='team_rule')
    op.drop_table('team_rule')
