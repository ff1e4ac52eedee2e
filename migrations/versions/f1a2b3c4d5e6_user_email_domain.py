"""unclaimed accounts: each person's email domain, indexed with the email

Revision ID: f1a2b3c4d5e6
Revises: e0f1a2b3c4d5
Create Date: 2026-12-07 04:30:00

"""
from alembic import op
import idna
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f1a2b3c4d5e6'
down_revision = 'e0f1a2b3c4d5'
branch_labels = None
depends_on = None

BATCH = 5000


def _domain(email):
    """blueprints.domains.services.email_domain as of this revision: the part after the
    last @, IDNA (xn--) and lower case when it is a valid name, else as written."""
    text = email.strip().lower().rpartition("@")[2]
    try:
        return idna.encode(text.removesuffix("."), uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return text


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_domain', sa.String(length=253), nullable=True))
    # Existing people, a batch of ids at a time (what models._keep_email_domain does on
    # every write from now on).
    bind = op.get_bind()
    user = sa.table(
        'user', sa.column('id', sa.Integer), sa.column('email', sa.String),
        sa.column('email_domain', sa.String),
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(user.c.id, user.c.email)
            .where(user.c.id > last)
            .order_by(user.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        bind.execute(
            user.update()
            .where(user.c.id == sa.bindparam('row_id'))
            .values(email_domain=sa.bindparam('domain')),
            [{'row_id': i, 'domain': _domain(e) if e else None} for i, e in rows],
        )
        last = rows[-1][0]
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.create_index(
            'ix_user_email_domain_key', ['email_domain', 'email_key'], unique=False
        )


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_index('ix_user_email_domain_key')
        batch_op.drop_column('email_domain')
