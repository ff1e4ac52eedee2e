"""WTForms for sign-in and passphrases; Flask-WTF adds the CSRF field to each."""

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional, ValidationError

from blueprints.common.passphrases import MAX_LENGTH


def no_control_characters(form, field) -> None:
    """Refuse NUL and other control characters: PostgreSQL rejects NUL in text, so one
    typed (or forged) into an email would otherwise fail the query instead of the form."""
    if field.data and any(ord(c) < 32 or ord(c) == 127 for c in field.data):
        raise ValidationError("Enter a valid email address.")


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320), no_control_characters])
    # Optional: members of a single sign-on domain continue with their email alone.
    passphrase = PasswordField("Passphrase", validators=[Optional(), Length(max=MAX_LENGTH)])
    next = HiddenField()


class ForgotForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[
            DataRequired(),
            no_control_characters,
            Email(check_deliverability=False),
            Length(max=320),
        ],
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


def an_email_address(form, field) -> None:
    """The address check invitations use (one @, a dotted domain; any TLD, `.test` too,
    which email-validator refuses as special-use)."""
    from blueprints.invitations.services import valid_email

    if field.data and not valid_email(field.data.strip()):
        raise ValidationError("Enter a valid email address.")


class SignUpForm(FlaskForm):
    """Self sign-up (SPEC F13)."""

    email = EmailField(
        "Email",
        validators=[DataRequired(), no_control_characters, Length(max=320), an_email_address],
    )
    passphrase = PasswordField("Passphrase", validators=[DataRequired()])
    confirm = PasswordField(
        "Repeat the passphrase",
        validators=[DataRequired(), EqualTo("passphrase", "The two passphrases differ.")],
    )
