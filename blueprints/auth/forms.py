"""WTForms for sign-in and passphrases; Flask-WTF adds the CSRF field to each."""

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from blueprints.common.passphrases import MAX_LENGTH


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    passphrase = PasswordField("Passphrase", validators=[DataRequired(), Length(max=MAX_LENGTH)])
    next = HiddenField()


class ForgotForm(FlaskForm):
    email = EmailField(
        "Email", validators=[DataRequired(), Email(check_deliverability=False), Length(max=320)]
    )


class NewPassphraseForm(FlaskForm):
    passphrase = PasswordField("New passphrase", validators=[DataRequired()])
    confirm = PasswordField(
        "Repeat the new passphrase",
        validators=[DataRequired(), EqualTo("passphrase", "The two passphrases differ.")],
    )


class ChangePassphraseForm(NewPassphraseForm):
    current = PasswordField("Current passphrase", validators=[DataRequired()])


class ConfirmPassphraseForm(FlaskForm):
    """Re-authentication for a sensitive action (SPEC F1)."""

    passphrase = PasswordField("Passphrase", validators=[DataRequired(), Length(max=MAX_LENGTH)])
