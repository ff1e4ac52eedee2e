"""audit streaming: an account's SIEM endpoint, and the queue of events to send it,
filled by a trigger in the transaction of each event

Revision ID: d2e3f4a5b6c7
Revises: c7d8e9f0a1b2
Create Date: 2026-12-06 22:30:00

"""
from alembic import op
import sqlalchemy as sa



# revision identifiers, used by Alembic.
revision = 'd2e3f4a5b6c7'
down_revision = 'c7d8e9f0a1b2'
branch_labels = None
depends_on = None

# Every audit event of an account whose stream is on is queued in the transaction that
# writes it, whichever code writes it (the pages' ORM, SCIM's Core statements): a
# trigger, so that no path can forget it. The lookup is one probe of a unique index.
SQLITE_TRIGGER = """
CREATE TRIGGER audit_event_stream AFTER INSERT ON audit_event
WHEN NEW.account_id IS NOT NULL
BEGIN
    INSERT INTO audit_delivery (stream_id, event_id)
    SELECT id, NEW.id FROM audit_stream WHERE account_id = NEW.account_id AND enabled;
END
"""
POSTGRES_FUNCTION = """
CREATE FUNCTION audit_event_stream() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_delivery (stream_id, event_id)
    SELECT id, NEW.id FROM audit_stream WHERE account_id = NEW.account_id AND enabled;
    RETURN NULL;
END
$$
"""
POSTGRES_TRIGGER = """
CREATE TRIGGER audit_event_stream AFTER INSERT ON audit_event
FOR EACH ROW WHEN (NEW.account_id IS NOT NULL)
EXECUTE FUNCTION audit_event_stream()
"""


def upgrade():
    op.create_table(
        'audit_stream',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('endpoint_url', sa.String(length=2048), nullable=False),
        sa.Column('secret_encrypted', sa.Text(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('created_by_user_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('failures', sa.Integer(), server_default='0', nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
        sa.Column('claimed_until', sa.DateTime(), nullable=True),
        sa.Column('last_attempt_at', sa.DateTime(), nullable=True),
        sa.Column('last_status', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.String(length=500), nullable=True),
        sa.Column('last_success_at', sa.DateTime(), nullable=True),
        sa.Column('delivered', sa.Integer(), server_default='0', nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['created_by_user_id'], ['user.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('account_id'),
    )
    op.create_table(
        'audit_delivery',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('stream_id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['event_id'], ['audit_event.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['stream_id'], ['audit_stream.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_audit_delivery_stream_id', 'audit_delivery', ['stream_id', 'id'])
    op.create_index('ix_audit_delivery_event_id', 'audit_delivery', ['event_id'])
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade():
    op.execute('DROP TRIGGER IF EXISTS audit_event_stream' + (
        ' ON audit_event' if op.get_bind().dialect.name == 'postgresql' else ''
    ))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP FUNCTION IF EXISTS audit_event_stream()')
    op.drop_index('ix_audit_delivery_event_id', table_name='audit_delivery')
    op.drop_index('ix_audit_delivery_stream_id', table_name='audit_delivery')
    op.drop_table('audit_delivery')
    op.drop_table('audit_stream')
