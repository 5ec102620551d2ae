"""Alembic environment for the ``alembic`` command line, used when writing a new revision::

    printf '[alembic]\\nscript_location = cloud/migrations\\n' > /tmp/alembic.ini
    alembic -c /tmp/alembic.ini -x url=sqlite+aiosqlite:////tmp/cloud.db upgrade head
    # ... change cloud/schema.py, then:
    alembic -c /tmp/alembic.ini -x url=sqlite+aiosqlite:////tmp/cloud.db \\
        revision --autogenerate --rev-id 0002 -m "what changed"

The cloud itself never reads this file: :func:`cloud.db.migrate` runs the revisions directly.
"""

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from cloud.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    async with engine.begin() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


asyncio.run(_run_with_url(context.get_x_argument(as_dictionary=True)["url"]))
