"""Downloads streamed a batch at a time (the Members and Audit log exports): rows are
fetched and written as they go, so 100,000 members or 1,000,000 events never sit in
memory. `rows` is a function that makes the iterator: it runs inside the response's
generator, after the request's unit of work has ended, in a transaction of its own."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable

from flask import Response, stream_with_context

from models import utcnow

BATCH = 500


def cells(values: Iterable) -> list[str]:
    """Cells a spreadsheet shows as text: one starting with = + - @ (or a tab or CR) would
    be run as a formula (CSV injection), so it gets a leading apostrophe."""
    out = []
    for value in values:
        text = "" if value is None else str(value)
        if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
            text = "'" + text
        out.append(text)
    return out


def _download(chunks, name: str, extension: str, mimetype: str) -> Response:
    stamp = utcnow().strftime("%Y%m%d")
    return Response(
        stream_with_context(chunks),
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="{name}-{stamp}.{extension}"',
            "Cache-Control": "no-store",
        },
    )


def csv_download(name: str, header: list[str], rows: Callable[[], Iterable]) -> Response:
    """`name-YYYYMMDD.csv`: the header, then each row of `rows()` (a sequence of values)."""

    def chunks():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        for count, row in enumerate(rows(), 1):
            writer.writerow(cells(row))
            if count % BATCH == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return _download(chunks(), name, "csv", "text/csv")


def jsonl_download(name: str, records: Callable[[], Iterable[dict]]) -> Response:
    """`name-YYYYMMDD.jsonl`: one JSON object per line (JSON Lines)."""

    def chunks():
        lines = []
        for record in records():
            lines.append(json.dumps(record, ensure_ascii=False, default=str))
            if len(lines) == BATCH:
                yield "\n".join(lines) + "\n"
                lines = []
        if lines:
            yield "\n".join(lines) + "\n"

    return _download(chunks(), name, "jsonl", "application/jsonl")
