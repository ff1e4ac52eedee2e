"""Blueprint registration: one blueprint per package, named after it."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from blueprints.audit.routes import bp as audit_bp
    from blueprints.auth.routes import bp as auth_bp
    from blueprints.common.errors import register_error_handlers
    from blueprints.dashboard.routes import bp as dashboard_bp
    from blueprints.domains.routes import bp as domains_bp
    from blueprints.invitations.routes import bp as invitations_bp
    from blueprints.members.routes import bp as members_bp
    from blueprints.scim_api.routes import bp as scim_api_bp
    from blueprints.scim_settings.routes import bp as scim_settings_bp
    from blueprints.settings.routes import bp as settings_bp
    from blueprints.sso.routes import bp as sso_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(domains_bp)
    app.register_blueprint(sso_bp)
    app.register_blueprint(scim_settings_bp)
    app.register_blueprint(members_bp)
    app.register_blueprint(invitations_bp)
    app.register_blueprint(settings_bp)
    app.register_blueprint(audit_bp)
    app.register_blueprint(scim_api_bp)
    register_error_handlers(app)
