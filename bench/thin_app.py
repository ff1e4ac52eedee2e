"""The reference the figures are read against: the thinnest durable Flask + SQLAlchemy
server that takes a SCIM-shaped POST /Users and answers the reads an IdP makes, on the
same machine, database kind, durability and gunicorn settings as the real run
(`bench/run.sh --reference`).

Per request it does what any such server must. A create: check the bearer token, parse
the JSON body, INSERT one row (userName unique) and commit it durably, answer 201 with
JSON. `GET /Users?filter=userName eq "…"` (or externalId): one indexed SELECT, the stored
body back in a ListResponse. `GET /Users?startIndex=&count=`: one page of rows by id and
the total. No validation, no matching, no seats, no log, no attributes: what is left of
the real server's time after this is what our own work costs.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import uuid

from flask import Flask, Response, jsonify, request
from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.exc import DBAPIError

metadata = MetaData()
users = Table(
    "thin_user",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("scim_id", String(36), nullable=False),
    Column("user_name", String(512), nullable=False, unique=True),
    Column("external_id", String(512)),
    Column("body", Text, nullable=False),
    Index("ix_thin_user_external_id", "external_id"),
)
INSERT = insert(users).returning(users.c.id)
LOOKUP = re.compile(r'^(userName|externalId) eq "(.*)"$')
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def create_app() -> Flask:
    app = Flask(__name__)
    url = os.environ["DATABASE_URL"]
    engine = create_engine(url, pool_size=8)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # durable, as the app
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    try:
        metadata.create_all(engine)
    except DBAPIError:  # another worker created them in between; they are there now
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

    def resource(row) -> dict:
        return dict(json.loads(row.body), id=row.scim_id, meta={"resourceType": "User"})

    @app.get(f"/{base}/Users")
    def list_users():
        if not authorised():
            return ("", 401)
        query = select(users.c.scim_id, users.c.body)
        lookup = LOOKUP.match(request.args.get("filter", ""))
        start = int(request.args.get("startIndex", 1))
        count = int(request.args.get("count", 100))
        with engine.connect() as connection:
            if lookup:
                column = users.c.user_name if lookup[1] == "userName" else users.c.external_id
                rows = connection.execute(query.where(column == lookup[2])).all()
                total = len(rows)
            else:
                total = connection.execute(select(func.count()).select_from(users)).scalar()
                page = query.order_by(users.c.id).offset(start - 1).limit(count)
                rows = connection.execute(page).all() if count else []
        body = {
            "schemas": [LIST],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": len(rows),
            "Resources": [resource(r) for r in rows],
        }
        return Response(json.dumps(body), content_type="application/scim+json")

    return app
