import os
import stat

import pytest
from hypothesis import given, strategies as st

from discnode.errors import InvalidInput
from discnode.identity import ALPHABET, Identity, node_id_for, parse_node_id


def test_node_id_is_four_checked_groups():
    node_id = Identity.generate().node_id
    groups = node_id.split("-")
    assert [len(g) for g in groups] == [7, 7, 7, 7]
    assert parse_node_id(node_id.lower().replace("-", " ")) == node_id


@given(st.binary(min_size=32, max_size=32), st.integers(0, 27), st.sampled_from(ALPHABET))
def test_any_single_mistyped_character_is_rejected(key, position, replacement):
    node_id = node_id_for(key)
    compact = node_id.replace("-", "")
    if compact[position] == replacement:
        return
    typo = compact[:position] + replacement + compact[position + 1:]
    with pytest.raises(InvalidInput):
        parse_node_id(typo)


@pytest.mark.parametrize("text", ["", "hello", "AAAAAAA-AAAAAAA-AAAAAAA", "1111111-1111111-1111111-1111111"])
def test_malformed_node_ids_are_rejected(text):
    with pytest.raises(InvalidInput):
        parse_node_id(text)


def test_init_keys_are_owner_only(home):
    for name in ("identity.key", "tls.key"):
        mode = stat.S_IMODE(os.stat(home.path / name).st_mode)
        assert mode == 0o600, name


def test_descriptor_binds_tls_certificate_to_identity(home):
    from discnode.signing import verify_document
    d = home.descriptor()
    verify_document(d, home.identity.public_key)
    assert d["tls_fingerprint"] == home.tls_fingerprint
    assert d["node_id"] == node_id_for(home.identity.public_key)


def test_node_id_and_keys_are_derived_once_per_identity(monkeypatch, tmp_path):
    import discnode.identity as identity_module
    from discnode.home import Config, Home
    calls = []
    real = identity_module.node_id_for
    monkeypatch.setattr(identity_module, "node_id_for", lambda key: calls.append(key) or real(key))
    home = Home.create(tmp_path / "node", Config(name="Once"))
    fresh = Home.open(home.path)
    calls.clear()
    ids = {fresh.node_id for _ in range(50)} | {fresh.identity.node_id for _ in range(50)}
    # A node with a key history takes its ID from its inception (no fingerprint to compute at all).
    assert ids == {real(fresh.identity.public_key)} and len(calls) <= 1
    assert fresh.identity.crypto_private_key() is fresh.identity.crypto_private_key()
    assert fresh.identity.public_key is fresh.identity.public_key


@given(st.one_of(st.binary(min_size=32, max_size=32).map(node_id_for), st.text(max_size=40),
                 st.text(alphabet=ALPHABET + "abc -\t27", min_size=26, max_size=34)))
def test_a_kept_node_id_parse_equals_parsing_afresh_refusals_included(text):
    """parse_node_id keeps what it parsed (identity._parse_text); the answer, or the refusal and its
    message, is what parsing the same text afresh gives, the first time and every time after."""
    from discnode.identity import _parse

    def outcome(fn):
        try:
            return "ok", fn(text)
        except InvalidInput as exc:
            return "refused", str(exc)
    fresh = outcome(_parse)
    assert outcome(parse_node_id) == fresh and outcome(parse_node_id) == fresh
