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


from hypothesis import given, settings, strategies as st  # noqa: E402

_codes = st.lists(st.text(max_size=6), max_size=3).map(tuple)


@settings(max_examples=300, deadline=None)
@given(text=st.none() | st.text(max_size=8), gender=_codes, tags=_codes, age=st.none() | st.integers(0, 120),
       excluded=st.none() | st.booleans(), sort=st.sampled_from(sorted(q.SORT_COLUMNS)), desc=st.booleans(),
       limit=st.integers(1, 200), after=st.none() | st.tuples(st.integers() | st.text(max_size=4),
                                                             st.text(max_size=4), st.text(max_size=4)))
def test_wire_form_is_the_deep_copy_form(text, gender, tags, age, excluded, sort, desc, limit, after):
    """Query.to_wire reads the fields directly: the same document as through dataclasses.asdict."""
    from dataclasses import asdict
    query = Query(text=text, gender=gender, tags=tags, age_min=age, excluded=excluded, sort=sort, desc=desc,
                  limit=limit, after=after)
    reference = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(query).items()}
    assert query.to_wire() == {k: v for k, v in reference.items() if v not in (None, [], ())}
