"""Indexes added to a live read-model table made before they existed."""

from __future__ import annotations


def added_once(
    schema: str, table: str, columns: str, indexdef_like: str, where: str | None = None
) -> str:
    """DDL that creates the index on ``columns`` of ``schema.table`` (of the rows ``where``
    holds, if given) unless one whose definition is ``LIKE indexdef_like`` is there already
    (index names are PostgreSQL's, as for every index of the read models, so an index is found
    by what it indexes), and nothing while the table does not exist (it is then created with
    its indexes)."""
    partial = f" WHERE {where}" if where else ""
    return f"""
        DO $$ BEGIN
        IF to_regclass('{schema}.{table}') IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_indexes WHERE schemaname = '{schema}' AND tablename = '{table}'
            AND indexdef LIKE '{indexdef_like}'
        ) THEN
            CREATE INDEX ON {schema}.{table} ({columns}){partial};
        END IF;
        END $$;
        """
