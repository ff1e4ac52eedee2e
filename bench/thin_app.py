"""The reference the create figures are read against: the thinnest durable Flask +
SQLAlchemy server that takes a SCIM-shaped POST /Users, on the same machine, database
kind and gunicorn settings as the real run (`bench/run.sh --reference`).

Per request it does what any such server must: check the bearer token, parse the JSON
body, INSERT one row (userName unique) and commit it durably, answer 201 with JSON. No
validation, no matching, no seats, no log: what is left of the real server's time per
create after this is what our own work costs.
"""

from __future__ import annotations

import hmac
import os
import uuid

from flask import Flask, jsonify, request
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, create_engine, event, insert

metadata = MetaData()
users = Table(
    "thin_user",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("scim_id", String(36), nullable=False),
    Column("user_name", String(512), nullable=False, unique=True),
    Column("external_id", String(512)),
    Column("body", Text, nullable=False),
)
INSERT = insert(users).returning(users.c.id)


def create_app() -> Flask:
    app = Flask(__name__)
    url = os.environ["DATABASE_URL"]
    engine = create_engine(url, pool_size=8)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")  # synchronous stays FULL: durable
            cursor.close()

    metadata.create_all(engine)
    token = os.environ["SCIM_TOKEN"].encode()
    base = os.environ["SCIM_BASE_URL"].split("://", 1)[-1].split("/", 1)[-1]

    def authorised() -> bool:
        scheme, _, presented = (request.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), token)

    @app.get(f"/{base}/ServiceProviderConfig")
    def config():
        return jsonify({"patch": {"supported": False}}) if authorised() else ("", 401)

    @app.post(f"/{base}/Users")
    def create_user():
        if not authorised():
            return ("", 401)
        body = request.get_json(force=True)
        row = {
            "scim_id": str(uuid.uuid4()),
            "user_name": body["userName"],
            "external_id": body.get("externalId"),
            "body": request.get_data(as_text=True),
        }
        with engine.begin() as connection:
            row["id"] = connection.execute(INSERT, row).scalar_one()
        answer = dict(body, id=row["scim_id"], meta={"resourceType": "User"})
        return jsonify(answer), 201, {"Content-Type": "application/scim+json"}

    return app
