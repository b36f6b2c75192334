"""The migrations and the models describe one schema: every table, column and index the
models declare exists after ``migrate`` (on SQLite and PostgreSQL), and the migrations make
nothing the models do not know of, so code written against the models meets the real tables."""

from __future__ import annotations

import sqlalchemy as sa

from db.models import Base


def _migrated_schema(sessions) -> dict[str, tuple[set[str], set[str]]]:
    with sessions() as session:
        inspector = sa.inspect(session.connection())
        return {
            table: ({c["name"] for c in inspector.get_columns(table)},
                    # PostgreSQL lists the index behind each unique constraint too: those are constraints
                    {i["name"] for i in inspector.get_indexes(table) if not i.get("duplicates_constraint")})
            for table in inspector.get_table_names() if table != "alembic_version"
        }


def test_migrations_build_the_tables_columns_and_indexes_the_models_declare(sessions):
    migrated = _migrated_schema(sessions)
    declared = {
        table.name: ({c.name for c in table.columns}, {i.name for i in table.indexes})
        for table in Base.metadata.sorted_tables
    }
    assert set(migrated) == set(declared)
    for name, (columns, indexes) in declared.items():
        assert migrated[name][0] == columns, f"columns of {name}"
        assert migrated[name][1] == indexes, f"indexes of {name}"
