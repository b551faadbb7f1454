"""The merge against its reference: the same query on all the data in one SQLite database.

Real SQLite stores, real signed records; no network (the fan-out is tested in test_dataview.py).
"""

import dataclasses
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from discnode import schemas, store
from discnode.dataview import merge, next_cursor
from discnode.handling import Audience
from discnode.identity import Identity
from discnode.profiles import build_record
from discnode.query import Query, apply_cursor
from discnode.signing import sign_document
from discnode.synthetic import People

TODAY = dt.date.today()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    people = People(seed=11)
    combined = store.connect(root / "all.db")
    store.migrate(combined)
    sources = []
    for n in range(4):
        ident = Identity.generate()
        db = store.connect(root / f"node{n}.db")
        store.migrate(db)
        records = []
        for i in range(45):
            fields = people.fields()
            if i % 7 == 0:  # ties on the sort values, across nodes too
                fields.update(last_name="Smith", first_name="Sam", last_seen="2026-01-01", incidents=[])
            records.append(sign_document(build_record(fields, ident.node_id), ident))
        store.put_profiles(db, records, identity=ident)
        store.put_profiles(combined, [r for r in records if not r["local_only"]])
        sources.append((ident.node_id, db))
    return sources, combined


#: Partners whose agreements share ethnicity and minors (synthetic people include 16- and
#: 17-year-olds): served everything the single database holds (handling.py narrows it otherwise).
EVERYTHING = Audience(ethnicity=True, minors=True)


def federated(sources, query):
    return merge([store.search(db, query, TODAY, served_by=origin, audience=EVERYTHING) for origin, db in sources],
                 query)


def reference(combined, query):
    return store.search(combined, dataclasses.replace(query, limit=100_000), TODAY)


def ids(records):
    return [(r["origin"], r["id"]) for r in records]


queries = st.builds(
    Query,
    text=st.sampled_from([None, "smith", "sa", "tattoo", "xyzzy"]),
    gender=st.lists(st.sampled_from(schemas.codes("gender")), max_size=2, unique=True).map(tuple),
    ethnicity=st.lists(st.sampled_from(schemas.codes("ethnicity")), max_size=3, unique=True).map(tuple),
    build=st.lists(st.sampled_from(schemas.codes("build")), max_size=2, unique=True).map(tuple),
    status=st.lists(st.sampled_from(schemas.codes("status")), max_size=1).map(tuple),
    tags=st.lists(st.sampled_from(schemas.codes("offence_tag")), max_size=1).map(tuple),
    age_min=st.one_of(st.none(), st.integers(16, 40)),
    age_max=st.one_of(st.none(), st.integers(41, 80)),
    excluded=st.sampled_from([None, True, False]),
    sort=st.sampled_from(schemas.codes("sort")),
    desc=st.booleans(),
    limit=st.integers(1, 60),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=queries)
def test_first_page_equals_the_single_database_query(world, query):
    sources, combined = world
    page, _ = federated(sources, query)
    assert ids(page) == ids(reference(combined, query)[: query.limit])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=queries)
def test_walking_every_page_yields_each_match_once_in_order(world, query):
    sources, combined = world
    walked, cursor = [], None
    for _ in range(500):
        q = apply_cursor(query, cursor)
        page, more = federated(sources, q)
        walked += page
        cursor = next_cursor(page, more, query)
        if cursor is None:
            break
    assert ids(walked) == ids(reference(combined, query))
    assert len(set(ids(walked))) == len(walked)
