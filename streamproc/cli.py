"""``faust -A <app>`` commands that streamproc adds (see ``faust -A <app> --help``).

``init-db``      create streamproc's tables and the app's own
``relay``        run the outbox relay alone, without processors
``dlq-list``     list dead letters
``dlq-show``     show one dead letter whole
``dlq-replay``   send dead letters back through their processor
``dlq-purge``    delete dead letters (they stay done)
"""

from __future__ import annotations

from typing import Any

from faust.cli import AppCommand, argument, option

from . import deadletter
from .config import mask_url

__all__: list[str] = []


def _streamproc_app(command: AppCommand) -> Any:
    from .app import App

    if not isinstance(command.app, App):
        raise SystemExit(f"{type(command.app).__name__} is not a streamproc.App")
    return command.app


class init_db(AppCommand):  # noqa: N801 - the class name is the command name
    """Create streamproc's tables and the app's tables, if missing."""

    async def run(self) -> None:
        app = _streamproc_app(self)
        await app.create_schema()
        await app.engine.dispose()
        self.say(f"schema {app.settings.schema!r} ready on {mask_url(app.settings.database_url)}")


class relay(AppCommand):  # noqa: N801
    """Run the outbox relay alone (no processors) until SIGTERM or Ctrl-C."""

    async def run(self) -> None:
        from .relay import Relay

        app = _streamproc_app(self)
        await app.create_schema()
        service = Relay(app.settings, app.engine)
        await service.start()
        self.say(f"relay running on schema {app.settings.schema!r}")
        try:
            await service.wait_until_stopped()
        finally:
            await service.stop()
            await app.engine.dispose()


class dlq_list(AppCommand):  # noqa: N801
    """List the newest dead letters."""

    options = [
        option("--processor", default=None, help="Only this processor's dead letters."),
        option("--limit", default=50, type=int, help="How many at most."),
    ]

    async def run(self, processor: str | None, limit: int) -> None:
        app = _streamproc_app(self)
        async with app.engine.begin() as conn:
            letters = await deadletter.list_letters(conn, app.settings.schema, processor, limit)
        await app.engine.dispose()
        rows = [["id", "processor", "source", "reason", "attempts", "error"]]
        for stored in letters:
            d = stored.letter
            rows.append([
                str(stored.id), d.processor, d.record.position, d.reason,
                str(d.attempts), d.error_message[:60],
            ])
        self.say(self.tabulate(rows, title="Dead letters"))


class dlq_show(AppCommand):  # noqa: N801
    """Show one dead letter: source, bytes, headers, error and traceback."""

    options = [argument("letter_id", type=int)]

    async def run(self, letter_id: int) -> None:
        app = _streamproc_app(self)
        async with app.engine.begin() as conn:
            stored = await deadletter.show(conn, app.settings.schema, letter_id)
        await app.engine.dispose()
        if stored is None:
            raise SystemExit(f"no dead letter {letter_id}")
        d = stored.letter
        for label, value in (
            ("id", stored.id), ("processor", d.processor), ("message id", d.message_id),
            ("source", d.record.position), ("key", d.record.key), ("value", d.record.value),
            ("headers", d.record.headers), ("reason", d.reason), ("error", f"{d.error_type}: {d.error_message}"),
            ("attempts", d.attempts), ("first failed", d.first_failed_at), ("last failed", d.last_failed_at),
        ):
            self.say(f"{label:>13}: {value!r}" if isinstance(value, bytes) else f"{label:>13}: {value}")
        self.say(d.traceback)


class dlq_replay(AppCommand):  # noqa: N801
    """Send dead letters back through their processor with fresh attempts."""

    options = [
        argument("letter_ids", type=int, nargs=-1),
        option("--all", "replay_all", is_flag=True, help="Replay every dead letter."),
    ]

    async def run(self, letter_ids: tuple[int, ...], replay_all: bool) -> None:
        app = _streamproc_app(self)
        async with app.engine.begin() as conn:
            if replay_all:
                letter_ids = tuple(
                    s.id for s in await deadletter.list_letters(conn, app.settings.schema, limit=1_000_000)
                )
            count = await deadletter.replay(conn, app.settings.schema, letter_ids, app.settings.relay_shards)
        await app.engine.dispose()
        self.say(f"replayed {count} dead letter(s); the relay publishes them")


class dlq_purge(AppCommand):  # noqa: N801
    """Delete dead letters; their messages stay done (they are not reprocessed)."""

    options = [
        argument("letter_ids", type=int, nargs=-1),
        option("--all", "purge_all", is_flag=True, help="Delete every dead letter."),
    ]

    async def run(self, letter_ids: tuple[int, ...], purge_all: bool) -> None:
        if not letter_ids and not purge_all:
            raise SystemExit("name dead letter ids, or --all")
        app = _streamproc_app(self)
        async with app.engine.begin() as conn:
            count = await deadletter.purge(conn, app.settings.schema, None if purge_all else letter_ids)
        await app.engine.dispose()
        self.say(f"purged {count} dead letter(s)")
