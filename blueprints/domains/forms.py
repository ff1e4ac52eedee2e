"""Domain forms."""

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length


class AddDomainForm(FlaskForm):
    name = StringField(
        "Domain",
        validators=[DataRequired("Enter a domain name, like example.com."), Length(max=300)],
    )
