"""scim named tokens: a connector's tokens move to scim_token; each connector's token
becomes one named "Default", with its secret, expiry and history (the IdP notices nothing)

Revision ID: f5a6b7c8d9e0
Revises: e4f5a6b7c8d9
Create Date: 2026-12-06 23:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f5a6b7c8d9e0'
down_revision = 'e4f5a6b7c8d9'
branch_labels = None
depends_on = None

# The connector columns that were its one token, as they move (same names) to scim_token.
MOVED = [
    'token_hash', 'token_encrypted', 'previous_token_hash', 'previous_valid_until',
    'lifetime_days', 'issued_at', 'refreshed_at', 'expires_at', 'bound_user_id',
    'refreshed_by_user_id', 'refresh_failure_reason', 'refresh_failed_at',
]
LIVE = 'revoked_at IS NULL'


def upgrade():
    op.create_table('scim_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('connector_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('token_encrypted', sa.Text(), nullable=True),
    sa.Column('previous_token_hash', sa.String(length=64), nullable=True),
    sa.Column('previous_valid_until', sa.DateTime(), nullable=True),
    sa.Column('lifetime_days', sa.Integer(), nullable=True),
    sa.Column('issued_at', sa.DateTime(), nullable=False),
    sa.Column('refreshed_at', sa.DateTime(), nullable=True),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.Column('last_used_addr', sa.String(length=45), nullable=True),
    sa.Column('created_by_user_id', sa.Integer(), nullable=True),
    sa.Column('bound_user_id', sa.Integer(), nullable=True),
    sa.Column('refreshed_by_user_id', sa.Integer(), nullable=True),
    sa.Column('refresh_failure_reason', sa.String(length=300), nullable=True),
    sa.Column('refresh_failed_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_by_user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['connector_id'], ['scim_connector.id'], name=op.f('fk_scim_token_connector_id_scim_connector'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['user.id'], name=op.f('fk_scim_token_created_by_user_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['bound_user_id'], ['user.id'], name=op.f('fk_scim_token_bound_user_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['refreshed_by_user_id'], ['user.id'], name=op.f('fk_scim_token_refreshed_by_user_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['revoked_by_user_id'], ['user.id'], name=op.f('fk_scim_token_revoked_by_user_id_user'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scim_token')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_scim_token_token_hash'))
    )
    op.create_index(op.f('ix_scim_token_connector_id'), 'scim_token', ['connector_id'])
    op.create_index(op.f('ix_scim_token_previous_token_hash'), 'scim_token', ['previous_token_hash'])
    op.create_index(
        'uq_scim_token_live_name', 'scim_token', ['connector_id', 'name'], unique=True,
        sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE),
    )

    # Each connector's token, as it is: the same hash (the IdP's requests keep working),
    # ciphertext (Reveal token shows the same secret), grace of the secret a refresh
    # replaced, expiry, lifetime, times, bound owner and failure (the sweeps and warnings
    # go on where they were). Its last address is the last one the request log saw.
    # Who created it was never recorded: the page says so rather than guess.
    op.execute(
        "INSERT INTO scim_token (connector_id, name, " + ", ".join(MOVED) + ", last_used_at, "
        "last_used_addr, created_at) "
        "SELECT c.id, 'Default', "
        + ", ".join(
            "COALESCE(c.issued_at, c.enabled_at, c.created_at)" if column == 'issued_at'
            else f"c.{column}"
            for column in MOVED
        )
        + ", c.last_used_at, (SELECT l.remote_addr FROM scim_request_log l "
        "WHERE l.connector_id = c.id AND l.outcome = 'success' ORDER BY l.id DESC LIMIT 1), "
        "COALESCE(c.issued_at, c.enabled_at, c.created_at) "
        "FROM scim_connector c WHERE c.token_hash IS NOT NULL"
    )

    with op.batch_alter_table('scim_connector', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scim_connector_previous_token_hash'))
        batch_op.drop_constraint(batch_op.f('uq_scim_connector_token_hash'), type_='unique')
        batch_op.drop_constraint(
            batch_op.f('fk_scim_connector_bound_user_id_user'), type_='foreignkey'
        )
        batch_op.drop_constraint(
            batch_op.f('fk_scim_connector_refreshed_by_user_id_user'), type_='foreignkey'
        )
        for column in MOVED:
            batch_op.drop_column(column)


def downgrade():
    with op.batch_alter_table('scim_connector', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lifetime_days', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('token_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('token_encrypted', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('previous_token_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('previous_valid_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('issued_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('refreshed_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('bound_user_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('refreshed_by_user_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('refresh_failure_reason', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('refresh_failed_at', sa.DateTime(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_scim_connector_token_hash'), ['token_hash'])
        batch_op.create_index(batch_op.f('ix_scim_connector_previous_token_hash'), ['previous_token_hash'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_scim_connector_bound_user_id_user'), 'user', ['bound_user_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_scim_connector_refreshed_by_user_id_user'), 'user', ['refreshed_by_user_id'], ['id'], ondelete='SET NULL')

    # One token per connector again: its live "Default" if it has one, else its newest
    # live token (the others are lost: the old schema holds one).
    chosen = (
        "(SELECT t.id FROM scim_token t WHERE t.connector_id = scim_connector.id "
        f"AND t.{LIVE} ORDER BY CASE WHEN t.name = 'Default' THEN 0 ELSE 1 END, t.id DESC "
        "LIMIT 1)"
    )
    op.execute(
        "UPDATE scim_connector SET "
        + ", ".join(
            f"{column} = (SELECT s.{column} FROM scim_token s WHERE s.id = {chosen})"
            for column in MOVED
        )
    )

    op.drop_index('uq_scim_token_live_name', table_name='scim_token')
    op.drop_index(op.f('ix_scim_token_previous_token_hash'), table_name='scim_token')
    op.drop_index(op.f('ix_scim_token_connector_id'), table_name='scim_token')
    op.drop_table('scim_token')
