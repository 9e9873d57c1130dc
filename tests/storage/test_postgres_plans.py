"""The PostgreSQL writer plans each of its statements once (plan_cache_mode force_generic_plan)
and keeps that plan until its tables' statistics change, so every generic plan must probe
indexes: a plan made on young tables, whose statistics say "a few rows", must not scan a whole
table once the tables have grown. (psycopg prepares one statement per set of parameter types;
these plans are made from untyped NULLs, whose types come from the statements' casts.)"""

from __future__ import annotations

import re

import psycopg
import pytest

from tests.conftest import fresh_postgres_database, require_postgres
from trackway.store.postgres.store import WRITER_STATEMENTS, PostgresStore, Q


def numbered(sql: str) -> tuple[str, int]:
    """psycopg's placeholders (%s, %b) as $1, $2, …; and how many there are."""
    count = 0

    def number(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return re.sub(r"%[sb]", number, sql), count


@pytest.mark.parametrize("name", WRITER_STATEMENTS)
def test_generic_plans_of_the_writer_probe_indexes(name: str) -> None:
    url = fresh_postgres_database(require_postgres())
    PostgresStore(url).migrate()
    sql, count = numbered(Q[name])
    with psycopg.connect(url, autocommit=True) as conn:
        # Two months of events, empty, as the writer creates them.
        for start in (0, 1):
            conn.execute(
                f"CREATE TABLE events_test{start} PARTITION OF events "  # type: ignore[arg-type]
                f"FOR VALUES FROM ({start * 1000}) TO ({start * 1000 + 1000})"
            )
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE statement AS {sql}")  # type: ignore[arg-type]
        nulls = ", ".join(["NULL"] * count)
        plan = "\n".join(
            row[0]
            for row in conn.execute(f"EXPLAIN EXECUTE statement ({nulls})")  # type: ignore[arg-type]
        )
    assert "Seq Scan" not in plan, plan
    assert "Index" in plan or name == "lock_batch", plan
