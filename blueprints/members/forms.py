"""Team rules forms (SPEC F12). The choices are the service's; what a value means (a team
of this account without a rule) is checked by rules.py, and its refusal shown next to the
field."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectChoice, SelectField, TextAreaField
from wtforms.validators import AnyOf, InputRequired, Length

ROLE_CHOICES = [SelectChoice("member", "Member"), SelectChoice("co-owner", "Co-owner")]
LICENCE_CHOICES = [SelectChoice("licensed", "Uses a licence"), SelectChoice("none", "No licence")]


class RuleFields:
    role = SelectField(
        "Role", choices=ROLE_CHOICES, validators=[InputRequired("Choose co-owner or member.")]
    )
    licence = SelectField(
        "Licence",
        choices=LICENCE_CHOICES,
        validators=[InputRequired("Choose whether they use a licence.")],
    )

    @property
    def licensed(self) -> bool:
        return self.licence.data == "licensed"


class AddRuleForm(RuleFields, FlaskForm):
    team = SelectField("Team", choices=[], validators=[InputRequired("Choose a team.")])


class ChangeRuleForm(RuleFields, FlaskForm):
    pass


class MoveRuleForm(FlaskForm):
    direction = HiddenField(validators=[AnyOf(["up", "down"], "Move up or down.")])


class RemoveRuleForm(FlaskForm):
    """Nothing but the CSRF token."""


class InviteForm(FlaskForm):
    """Invite people (SPEC F13): one or many addresses; what each is, and how many at
    once, is checked by the route with the invitation service's rules, next to the field."""

    emails = TextAreaField(
        "Email addresses",
        validators=[Length(max=40_000, message="That is more than 100 addresses.")],
    )
