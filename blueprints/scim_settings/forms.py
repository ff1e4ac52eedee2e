"""SCIM page forms."""

from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField
from wtforms.validators import InputRequired

from blueprints.scim_settings.connector import IDPS, LIFETIME_LABELS


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
