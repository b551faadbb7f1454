"""A served page is read in index order: no temporary sort, whatever the sort and direction."""

import datetime as dt

import pytest

from discnode import query as q
from discnode.query import Query


@pytest.mark.parametrize("sort", sorted(q.SORT_COLUMNS))
@pytest.mark.parametrize("desc", [False, True])
@pytest.mark.parametrize("after", [False, True])
def test_a_served_page_follows_its_index_without_a_temporary_sort(home, sort, desc, after):
    query = Query(sort=sort, desc=desc, limit=50)
    if after:
        query = Query(sort=sort, desc=desc, limit=50, after=(0 if sort == "incidents" else "m", "A", "b"))
    sql, params = q.build_sql(query, dt.date(2026, 11, 26), served_by=home.node_id)
    plan = " / ".join(row[3] for row in home.db.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert f"INDEX profiles_by_{q.SORT_COLUMNS[sort]}" in plan and "TEMP B-TREE" not in plan, plan
