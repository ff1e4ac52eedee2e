"""SSO configuration forms."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional


class SamlForm(FlaskForm):
    """Either the IdP's metadata XML, or its entity id, sign-in URL and certificate."""

    metadata_xml = TextAreaField("IdP metadata XML", validators=[Optional(), Length(max=200_000)])
    entity_id = StringField("IdP entity ID (issuer)", validators=[Optional(), Length(max=1024)])
    sso_url = StringField("IdP sign-in URL", validators=[Optional(), Length(max=2048)])
    certificate = TextAreaField(
        "IdP signing certificate (PEM)", validators=[Optional(), Length(max=20_000)]
    )


class OidcForm(FlaskForm):
    issuer = StringField(
        "Issuer URL", validators=[DataRequired("Enter the issuer URL."), Length(max=1024)]
    )
    client_id = StringField(
        "Client ID", validators=[DataRequired("Enter the client ID."), Length(max=512)]
    )
    client_secret = PasswordField("Client secret", validators=[Optional(), Length(max=2048)])
