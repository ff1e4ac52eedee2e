"""The scheduler of each process (SPEC F8, F14). Every process of every instance schedules
every job (APScheduler); each tick asks `run_job` to run it under its database lease,
with the time it fell due, so that one process runs it once per due time: a tick that
comes a moment after another process's run ended finds the run done and skips it.
`JOB_SCHEDULE` (configuration) replaces any job's trigger."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask

log = logging.getLogger(__name__)
MICROSECOND = timedelta(microseconds=1)
# Intervals count from here, not from each process's start: every process then has the
# same due times (every 30 s means :00 and :30 everywhere).
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def trigger(spec: dict, jitter: bool = True):
    """An APScheduler trigger from its arguments ({"trigger": "cron", "hour": 2, …});
    without its `jitter` (the random delay of each tick, which spreads the processes'
    ticks) when `jitter` is False: the grid of due times."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    kinds = {"cron": CronTrigger, "interval": IntervalTrigger}
    arguments = {key: value for key, value in spec.items() if key != "trigger"}
    if not jitter:
        arguments.pop("jitter", None)
    if spec["trigger"] == "interval":
        arguments.setdefault("start_date", EPOCH)
    return kinds[spec["trigger"]](timezone=UTC, **arguments)


def due_time(when, now: datetime) -> datetime | None:
    """The latest time the trigger `when` fell due at or before `now` (None if it never
    did in the last eight days): looked for one second back, then two, four…, then
    forward from what was found."""
    back = timedelta(seconds=1)
    while back <= timedelta(days=8):
        found = when.get_next_fire_time(None, now - back)
        if found is not None and found <= now:
            while (later := when.get_next_fire_time(found, found + MICROSECOND)) and (later <= now):
                found = later
            return found
        back *= 2
    return None


def start(app: Flask, jobs: dict[str, dict], run: Callable):
    """Schedule `jobs` (name -> trigger arguments) in this process; `run(app, name,
    due=…)` runs one under its lease."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True})
    for name, spec in jobs.items():
        spec = app.config["JOB_SCHEDULE"].get(name, spec)
        when, grid = trigger(spec), trigger(spec, jitter=False)

        def tick(name=name, grid=grid):
            try:
                run(app, name, due=due_time(grid, datetime.now(UTC)))
            except Exception:
                log.exception("job %s failed", name)

        scheduler.add_job(tick, when, id=name, name=name, max_instances=1)
    scheduler.start()
    app.extensions["scheduler"] = scheduler
    return scheduler
