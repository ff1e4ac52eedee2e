"""Account settings forms. Whether a domain in the list is one is the service's to say
(settings.services.change_invite_controls), next to the field."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, SelectChoice, TextAreaField
from wtforms.validators import InputRequired, Length

from blueprints.domains.policy import LABELS


class InviteControlsForm(FlaskForm):
    policy = RadioField(
        "Who may be invited",
        choices=[SelectChoice(value, label) for value, label in LABELS.items()],
        validators=[InputRequired("Choose who may be invited.")],
    )
    domains = TextAreaField(
        "Domains allowed",
        validators=[Length(max=30_000, message="That list is too long.")],
    )


class ScimOnlyForm(FlaskForm):
    """The "SCIM only" switch: `on` is "1" to turn it on, anything else off."""

    on = HiddenField()
