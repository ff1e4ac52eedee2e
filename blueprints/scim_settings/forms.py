"""SCIM page forms."""

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, Optional

from blueprints.auth.forms import ConfirmPassphraseForm
from blueprints.scim_settings.connector import DEPROVISION_MODES, IDPS, LIFETIME_LABELS, NAME_MAX


class EnableForm(FlaskForm):
    # InputRequired: a post without the field must not fall back to the default choice
    # (the owner picks the IdP and the lifetime, SPEC F4).
    idp = SelectField(
        "Identity provider",
        choices=[SelectChoice(value, label) for value, label in IDPS.items()],
        default="okta",
        validators=[InputRequired("Choose your identity provider.")],
    )
    lifetime = SelectField(
        "Token lifetime",
        choices=[SelectChoice(value, label) for value, label in LIFETIME_LABELS.items()],
        default="365",
        validators=[InputRequired("Choose how long the token lasts.")],
    )
    # SPEC F12: the IdP's writes answered and forecast, not applied, until Go live.
    preview = BooleanField("Preview first (dry run)")


ALLOW_LIST_HELP = (
    "Optional. Addresses or CIDR ranges, IPv4 or IPv6, one per line or separated by commas "
    "(e.g. your IdP's published egress ranges). Empty: any address."
)


class AccessFields:
    """Where and how a token may be used (SPEC F11): whether the ranges parse is the
    service's to say (connector.parse_networks), next to the field."""

    allowed_networks = TextAreaField(
        "IP allow-list",
        description=ALLOW_LIST_HELP,
        validators=[Optional(), Length(max=4000, message="Keep the allow-list shorter.")],
    )
    read_only = BooleanField("Read-only: GET and POST /.search only, every write refused")


class NewTokenForm(AccessFields, ConfirmPassphraseForm):
    """New token (SPEC F11): a name, a lifetime, optional access limits, and the
    passphrase (a sensitive action). Whether the name is free, the ranges valid and the
    limit not reached is the service's to say."""

    name = StringField(
        "Token name",
        validators=[
            InputRequired("Give the token a name, such as the IdP app it is for."),
            Length(max=NAME_MAX, message=f"Keep the name to {NAME_MAX} characters."),
        ],
    )
    lifetime = SelectField(
        "Token lifetime",
        choices=[SelectChoice(value, label) for value, label in LIFETIME_LABELS.items()],
        default="365",
        validators=[InputRequired("Choose how long the token lasts.")],
    )


class AccessForm(AccessFields, ConfirmPassphraseForm):
    """Change access of a token: its allow-list and scope, with the passphrase. Prefixed,
    so that its fields' ids differ from the New token form's on the same page."""


class DeprovisionForm(FlaskForm):
    """The deprovisioning policy (SPEC F12). The days are text here: whether they are a
    number from 1 to 365 is the service's to say (connector.change_deprovision_policy),
    next to the field."""

    mode = RadioField(
        "When the IdP deactivates or deletes a user",
        choices=[SelectChoice(value, label) for value, label in DEPROVISION_MODES.items()],
        validators=[InputRequired("Choose what happens when the IdP deactivates or deletes.")],
    )
    days = StringField(
        "Number of days (N)",
        validators=[Length(max=20, message="Enter a whole number of days from 1 to 365.")],
    )
