"""SCIM page forms."""

from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField, StringField
from wtforms.validators import InputRequired, Length

from blueprints.auth.forms import ConfirmPassphraseForm
from blueprints.scim_settings.connector import IDPS, LIFETIME_LABELS, NAME_MAX


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


class NewTokenForm(ConfirmPassphraseForm):
    """New token (SPEC F11): a name, a lifetime, and the passphrase (a sensitive action).
    Whether the name is free and the limit not reached is the service's to say."""

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
