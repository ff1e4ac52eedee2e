"""Audit log page forms."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from blueprints.common.outbound import MAX_URL
from blueprints.common.passphrases import MAX_LENGTH


class StreamForm(FlaskForm):
    """Where the events go; the passphrase, since it decides where they leave for."""

    endpoint_url = StringField(
        "Endpoint URL",
        validators=[
            DataRequired("Enter the URL of your endpoint."),
            Length(max=MAX_URL, message=f"The URL is longer than {MAX_URL} characters."),
        ],
    )
    passphrase = PasswordField("Passphrase", validators=[DataRequired(), Length(max=MAX_LENGTH)])
