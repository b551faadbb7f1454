"""What the CLI shows a person, and what it writes for them: terminal safety against a hostile
partner (issue 9 item 3), owner-only exports (issue 9 item 11), and output at 80 columns, in pipes
and for scripts (issue 10). Real nodes on loopback throughout; the hostile partner is a real node
whose administrator typed markup and escape sequences into its name and profiles."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from discnode import output
from discnode.home import Config, Home
from tests.conftest import jpeg_with_gps

ESC = "\x1b"
#: A partnership name a hostile partner might choose: rich markup (a closing tag that crashed
#: `peer list`, a style), a clear-screen, an OSC 8 hyperlink, a bidi override, and a C1 CSI.
EVIL_NAME = "Evil [/] [bold red]Red[/bold red] \x1b[2J\x1b]8;;http://evil.example/\x1b\\x\x1b]8;;\x1b\\ \u202eRTL\x9b31m BCRP"
EVIL_FIRST = "[/]"
EVIL_LAST = "\x1b[2J[bold red]Red"
EVIL_ALIAS = "[link=http://evil.example]click[/link]"
EVIL_MARKS = "\x1b]8;;http://evil.example/\x1b\\tattoo\x1b]8;;\x1b\\"


def no_escapes(text: str) -> None:
    """Nothing in the text can act on a terminal: no ESC, no C1 controls, no bidi overrides."""
    assert ESC not in text
    assert not re.search("[\x80-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\x07\x08]", text), \
        repr(re.search("[\x80-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\x07\x08]", text))


def rename(node, name: str) -> None:
    """The hostile administrator's own choice of name, as its config file holds it."""
    node.stop()
    home = Home.open(node.cli.home)
    home.write_config(Config(name=name, host=home.config.host, port=home.config.port))
    home.close()
    node.start()


@pytest.fixture
def hostile(network):
    """A (the administrator we protect) agrees with E, a consenting partner with a hostile name and
    hostile profile fields; A also has a profile of its own."""
    a = network.node("A")
    e = network.node("E")
    rename(e, EVIL_NAME)
    e.cli("profile", "add", "--first-name", EVIL_FIRST, "--last-name", EVIL_LAST, "--alias", EVIL_ALIAS,
          "--marks", EVIL_MARKS, "--notes", "\u202egnp.exe", "--tag", "shoplifting", "--dob", "1990-01-01", "--json")
    a.cli("profile", "add", "--first-name", "[/]", "--last-name", "Red", "--dob", "1990-01-01", "--json")
    a.cli("peer", "add", e.url, "--expect", e.node_id, "--json")
    e.cli("peer", "accept", a.node_id, "--json")
    return a, e


def test_offering_to_a_hostile_partner_prints_its_name_literally(network):
    a, e = network.node("A"), network.node("E")
    rename(e, EVIL_NAME)
    out = a.cli("peer", "add", e.url, "--expect", e.node_id).out
    no_escapes(out)
    assert "Offered sharing to Evil [/] [bold red]Red[/bold red]" in out


# --- issue 9 item 3: terminal and markup injection -------------------------------------------


@pytest.mark.parametrize("text, shown", [
    ("Evil [/] BCRP", "Evil [/] BCRP"),
    ("\x1b[2Jcleared", "\\x1b[2Jcleared"),
    ("\x1b]8;;http://e.example/\x1b\\link", "\\x1b]8;;http://e.example/\\x1b\\link"),
    ("\u202eevil", "\\u202eevil"),
    ("a\x9bb", "a\\x9bb"),
    ("bell\x07 del\x7f", "bell\\x07 del\\x7f"),
    ("line\nbreak\u2028sep", "line\\x0abreak\\u2028sep"),
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("tab\there\u00a0nbsp", "tab here nbsp"),
    ("Seán Ó Ríordáin, Łukasz Żółć", "Seán Ó Ríordáin, Łukasz Żółć"),
    (":police_car: [bold]x[/bold]", ":police_car: [bold]x[/bold]"),
])
def test_untrusted_text_is_shown_literally_and_cannot_act_on_the_terminal(text, shown, capsys):
    assert output.printable(text) == shown
    output.console.print(output.safe(text))
    out = capsys.readouterr().out
    no_escapes(out)
    assert out.rstrip("\n") == shown


def test_hostile_partner_name_does_not_break_peer_list_or_peer_show(hostile):
    a, e = hostile
    out = a.cli("peer", "list").out
    no_escapes(out)
    assert "Evil [/] [bold red]Red[/bold red]" in out and "\\x1b[2J" in out and "\\u202eRTL\\x9b31m" in out
    shown = a.cli("peer", "show", e.node_id).out
    no_escapes(shown)
    assert "Evil [/] [bold red]Red[/bold red]" in shown


def test_escape_sequences_from_a_partner_never_reach_the_terminal(network):
    """Without any markup, so that only the escape sequences are on trial."""
    a, e = network.node("A"), network.node("E")
    rename(e, "Clear\x1b[2J \x1b]8;;http://evil.example/\x1b\\x\x1b]8;;\x1b\\ \u202eRTL\x9b31m BCRP")
    e.cli("profile", "add", "--first-name", "Eve\x1b[5m", "--last-name", "Ink\u202e\x07", "--json")
    a.cli("peer", "add", e.url, "--expect", e.node_id, "--json")
    e.cli("peer", "accept", a.node_id, "--json")
    for args in (["peer", "list"], ["search"], ["level-two"]):
        out = a.cli(*args).out
        no_escapes(out)
        assert "Clear\\x1b[2J" in out, args
    assert "Eve\\x1b[5m" in a.cli("search").out
    as_json = a.cli("search", "--json").out  # JSON escapes them: \u001b, never the byte
    no_escapes(as_json)
    assert "Eve\\u001b[5m" in as_json


def test_hostile_profile_fields_are_shown_literally_in_search_and_profile_show(hostile):
    a, e = hostile
    out = a.cli("search").out
    no_escapes(out)
    assert "[/] \\x1b[2J[bold red]Red" in out and "Evil [/]" in out
    ref = f"{e.node_id}:{e.cli('profile', 'list', '--json').json[0]['id']}"
    shown = a.cli("profile", "show", ref).out
    no_escapes(shown)
    for text in ("[/] \\x1b[2J[bold red]Red", EVIL_ALIAS, "\\x1b]8;;http://evil.example/\\x1b\\tattoo",
                 "\\u202egnp.exe", "Evil [/] [bold red]Red[/bold red]"):
        assert text in shown, text


def test_hostile_text_is_safe_in_level_two_statuses_and_contact_sheet(hostile, tmp_path):
    a, e = hostile
    out = a.cli("level-two").out
    no_escapes(out)
    assert "Evil [/]" in out
    sheet = tmp_path / "faces.png"
    out = a.cli("search", "--contact-sheet", sheet).out
    no_escapes(out)
    assert sheet.stat().st_size > 0


def test_contact_sheet_captions_are_printable():
    from discnode.contactsheet import captions
    name, partnership, ref = captions({"first_name": EVIL_FIRST, "last_name": EVIL_LAST, "origin_name": EVIL_NAME,
                                       "origin": "N", "id": "abc"})
    for text in (name, partnership, ref):
        no_escapes(text)
    assert name == "[/] \\x1b[2J[bold red]Red" and ref == "N:abc"


def test_error_naming_a_hostile_partner_is_one_literal_line(hostile):
    a, e = hostile
    ref = f"{e.node_id}:{e.cli('profile', 'list', '--json').json[0]['id']}"
    a.cli("peer", "revoke", e.node_id)
    r = a.cli("profile", "show", ref, ok=False)
    no_escapes(r.err)
    assert "Evil [/] [bold red]Red[/bold red]" in r.err and len(r.err.strip().splitlines()) == 1
    j = a.cli("profile", "show", ref, "--json", ok=False)
    assert json.loads(j.err)["error"]["message"].startswith("no active agreement with Evil [/]")


def test_own_markup_in_a_name_or_search_words_does_not_crash(tmp_path, capsys):
    from tests.conftest import Cli
    mine = Cli(tmp_path / "mine", capsys)
    assert "Created node [/] Mine" in mine("init", "--name", "[/] Mine").out
    out = mine("search", "[/] [bold]").out
    no_escapes(out)
    assert "Dataview of [/] Mine" in out
    assert "[/]" in mine("audit").out


def test_daemon_log_lines_are_printable():
    """`serve` logs partners' names (could not deliver to ..., could not announce to ...)."""
    import logging
    from discnode.text import PrintableLogs
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PrintableLogs())
    log = logging.getLogger("discnode.test-printable")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("could not announce to %s: %s", EVIL_NAME, "fake\n2026-01-01 INFO forged line")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    no_escapes(text)
    assert text.count("\n") == 1 and "Evil [/] [bold red]Red[/bold red] \\x1b[2J" in text


# --- issue 9 item 11: exports readable by their owner only -----------------------------------


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_saved_images_are_owner_only_whatever_the_umask(network, tmp_path, loose_umask):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    photo = jpeg_with_gps(tmp_path / "p.jpg")
    own = a.cli("profile", "add", "--first-name", "Ann", "--last-name", "Able", "--image", photo, "--json").json
    theirs = b.cli("profile", "add", "--first-name", "Bob", "--last-name", "Bell", "--image", photo, "--json").json
    (tmp_path / "theirs").mkdir(mode=0o755)
    mine_dir = tmp_path / "theirs" / "exports" / "mine"
    r = a.cli("profile", "show", own["id"], "--save-images", mine_dir)
    peer_dir = tmp_path / "peer" / "photos"
    s = a.cli("profile", "show", f"{b.node_id}:{theirs['id']}", "--save-images", peer_dir, "--json").json
    for folder in (tmp_path / "theirs" / "exports", mine_dir, tmp_path / "peer", peer_dir):
        assert mode(folder) == 0o700, folder
    files = list(mine_dir.iterdir()) + list(peer_dir.iterdir())
    assert len(files) == 2 and all(mode(f) == 0o600 for f in files)
    assert f"Saved {next(mine_dir.iterdir())}\n" in r.out  # says where the files went, whole
    assert s["saved_images"] == [str(p) for p in peer_dir.iterdir()]
    assert mode(tmp_path / "theirs") == 0o755  # a folder that was there is the administrator's own: left alone


def test_contact_sheet_is_owner_only_whatever_the_umask(network, tmp_path, loose_umask):
    a = network.node("A")
    a.cli("profile", "add", "--first-name", "Ann", "--last-name", "Able", "--image", jpeg_with_gps(tmp_path / "p.jpg"))
    sheet = tmp_path / "sheets" / "faces.png"
    a.cli("search", "--contact-sheet", sheet)
    assert mode(sheet) == 0o600 and mode(sheet.parent) == 0o700


def test_search_output_files_are_owner_only_whatever_the_umask(network, tmp_path, loose_umask):
    a = network.node("A")
    a.cli("profile", "add", "--first-name", "Ann", "--last-name", "Able")
    a.cli("search", "--csv", "--output", tmp_path / "out" / "all.csv")
    a.cli("search", "--json", "--output", tmp_path / "out" / "all.json")
    for path in (tmp_path / "out" / "all.csv", tmp_path / "out" / "all.json"):
        assert mode(path) == 0o600, path
        assert mode(path.parent) == 0o700, path.parent
    assert json.loads((tmp_path / "out" / "all.json").read_text())["results"][0]["last_name"] == "Able"
    assert "Ann" in (tmp_path / "out" / "all.csv").read_text()
    r = a.cli("search", "--json", "--output", tmp_path / "out", ok=False)  # a folder: one line, nothing written
    assert r.code == 2 and "is a folder" in r.err and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "all.csv", "all.json"]


# --- issue 10 defect 5: 80 columns and pipes --------------------------------------------------


def three_pages(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    for i in range(3):
        a.cli("profile", "add", "--first-name", f"Ann{i}", "--last-name", "Abbotsford-Smythe", "--tag", "shoplifting",
              "--tag", "abuse-to-staff", "--dob", "1990-01-01", "--last-seen", "2026-01-01")
        b.cli("profile", "add", "--first-name", f"Bob{i}", "--last-name", "Bell", "--tag", "violence")
    return a, b


def cursor_of(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("--cursor ")]
    assert len(lines) == 1, out
    return lines[0].split(" ", 1)[1]


def test_search_at_80_columns_keeps_tags_and_a_whole_cursor(network, monkeypatch):
    a, b = three_pages(network)
    monkeypatch.setenv("COLUMNS", "80")
    out = a.cli("search", "--limit", "4").out
    assert all(len(line) <= 80 for line in out.splitlines() if not line.startswith("--cursor ")), out
    assert "tags" in out and "shoplifting" in out and "abuse-to-staff" in out and "violence" in out
    page2 = a.cli("search", "--limit", "4", "--cursor", cursor_of(out)).out
    assert "Bob2" in page2 or "Ann2" in page2


def test_search_peer_list_and_audit_piped_to_another_program(network):
    """A real process writing to a pipe, with no COLUMNS: what `discnode search | less` or a cron
    job's mail gets."""
    a, b = three_pages(network)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}

    def run(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "discnode", "--home", str(a.cli.home), *args],
                           capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=60)
        assert r.returncode == 0, r.stderr
        assert ESC not in r.stdout  # no colours into a pipe
        return r.stdout
    first = run("search", "--limit", "4")
    assert "tags" in first and "shoplifting" in first and "abuse-to-staff" in first
    run("search", "--limit", "4", "--cursor", cursor_of(first))
    assert b.node_id in run("peer", "list")
    audit = run("audit")
    assert b.node_id in audit and re.search(r"^#\d+  \S+  consent-offer-sent  by os:\S+$", audit, re.M), audit


def test_peer_list_at_80_columns_never_wraps_node_ids(network, monkeypatch):
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(a, c)
    monkeypatch.setenv("COLUMNS", "80")
    out = a.cli("peer", "list").out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert b.node_id in out and c.node_id in out
    assert "active" in out


def test_audit_at_80_columns_is_readable(network, monkeypatch):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    a.cli("search", "some words")
    monkeypatch.setenv("COLUMNS", "80")
    out = a.cli("audit").out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert b.node_id in out  # whole, on one line
    assert re.search(r"^#\d+  \S+  consent-offer-sent  by os:\S+$", out, re.M), out  # who acted, on the same line
    assert "query.text=some words" in out


# --- issue 10 defect 6: profile show in words --------------------------------------------------


def test_profile_show_reads_as_words_not_json(cli, tmp_path):
    pid = cli("profile", "add", "--first-name", "Ann", "--last-name", "Able", "--alias", "Annie", "--alias", "AA",
              "--tag", "shoplifting", "--tag", "violence", "--image", jpeg_with_gps(tmp_path / "p.jpg"),
              "--json").json["id"]
    cli("profile", "edit", pid, "--incident", "2026-10-01|Boots, High St|theft|Took razors",
        "--exclusion", "2026-10-02|2027-10-01|all members")
    out = cli("profile", "show", pid).out
    for raw in ('["', "False", "True", "None", "{", "sha256"):
        assert raw not in out, raw
    for words in ("Annie, AA", "shoplifting, violence", "2026-10-01  theft at Boots, High St: Took razors",
                  "2026-10-02 to 2027-10-01: all members", "1 photo(s); --save-images DIR saves them"):
        assert words in out, words
    assert re.search(r"local only\s+no", out)
    saved = cli("profile", "show", pid, "--save-images", tmp_path / "photos").out
    [photo] = (tmp_path / "photos").iterdir()
    assert "1 photo(s), saved" in saved and f"Saved {photo}\n" in saved


# --- issue 10 defect 7: errors for scripts ----------------------------------------------------


@pytest.mark.parametrize("args, code, exit_code", [
    (["profile", "show", "nosuchprofile"], "not_found", 3),
    (["search", "--limit", "500"], "invalid", 2),
    (["search", "--no-such-option"], "usage", 2),
    (["search", "--limit", "many"], "usage", 2),
])
def test_with_json_every_failure_is_a_json_error_on_stderr_with_the_same_exit_code(cli, args, code, exit_code):
    plain = cli(*args, ok=False)
    as_json = cli(*args, "--json", ok=False)
    assert plain.code == as_json.code == exit_code
    assert as_json.out == ""
    body = json.loads(as_json.err)
    assert body["error"]["code"] == code and body["error"]["message"]
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}


def test_mistyped_option_in_a_pipe_is_one_line_without_a_panel(cli):
    r = cli("search", "--gendr", "male", ok=False)
    assert r.code == 2
    assert len(r.err.strip().splitlines()) == 1 and "No such option: --gendr" in r.err
    assert not set("╭╮╰╯│─") & set(r.err)


def test_version():
    from importlib.metadata import version
    r = subprocess.run([sys.executable, "-m", "discnode", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"discnode {version('discnode')} (protocol 1)"


# --- issue 10, missing: offer terms, CSV, names, elapsed times, delete, --expect, contact sheet -


def test_peer_show_and_peer_list_json_give_the_offer_terms(network):
    a, b = network.node("A"), network.node("B")
    a.cli("peer", "add", b.url, "--expect", b.node_id, "--purpose", "Catching the Tuesday gang",
          "--share", "profiles", "--review-days", "30")
    [row] = b.cli("peer", "list", "--json").json
    terms = row["terms"]
    assert terms["purpose"] == "Catching the Tuesday gang" and terms["share"] == ["profiles"]
    assert terms["offered_by"] == "them" and terms["review_by"] == row["review_by"]
    shown = b.cli("peer", "show", a.node_id).out
    assert "Catching the Tuesday gang" in shown and terms["review_by"] in shown and "pending" in shown
    assert "peer show NODE_ID" in b.cli("peer", "list").out  # pointed to before accepting
    info = b.cli("peer", "show", a.node_id, "--json").json
    assert [d["type"] for d in info["documents"]] == ["offer"] and info["terms"] == terms
    assert b.cli("peer", "show", "A BCRP", "--json").json == info  # by name too
    assert "no peer" in b.cli("peer", "show", b.node_id, ok=False).err


def test_undelivered_documents_are_counted_in_peer_list_and_peer_show(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    b.stop()
    a.cli("peer", "revoke", b.node_id)
    [row] = a.cli("peer", "list", "--json").json
    assert row["undelivered"] == 1
    [line] = [line for line in a.cli("peer", "list").out.splitlines() if b.node_id in line]
    assert "revoked" in line and line.rstrip().endswith(" 1")
    info = a.cli("peer", "show", b.node_id, "--json").json
    assert info["undelivered"] == 1 and info["documents"][-1] == {
        "type": "revoke", "by": "us", "issued_at": info["documents"][-1]["issued_at"], "delivered": False}
    assert "not delivered yet" in a.cli("peer", "show", b.node_id).out


def test_search_csv_has_one_row_per_profile_and_neutralises_formulas(network):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    a.cli("profile", "add", "--first-name", "=HYPERLINK(\"http://evil.example\")", "--last-name", "+1+1",
          "--alias", "@SUM(A1)", "--marks", "x", "--tag", "shoplifting", "--tag", "violence")
    b.cli("profile", "add", "--first-name", "-2", "--last-name", "Bell", "--age-min", "20", "--id-sought")
    r = a.cli("search", "--csv")
    rows = list(csv.DictReader(io.StringIO(r.out)))
    assert len(rows) == 2
    by_origin = {row["reference"].rsplit(":", 1)[0]: row for row in rows}
    mine, theirs = by_origin[a.node_id], by_origin[b.node_id]
    assert mine["first_name"] == "'=HYPERLINK(\"http://evil.example\")" and mine["last_name"] == "'+1+1"
    assert mine["aliases"] == "'@SUM(A1)" and mine["tags"] == "shoplifting; violence"
    assert theirs["first_name"] == "'-2" and theirs["age_min"] == "20" and theirs["partnership"] == "B BCRP"
    assert not any(cell[:1] in "=+-@" for row in rows for cell in row.values() if cell)


def test_partnership_by_name_and_an_ambiguous_name_is_refused_with_the_ids(network):
    a, b, c, d = network.node("A"), network.node("B"), network.node("C"), network.node("D")
    rename(c, "Twin BCRP")
    rename(d, "Twin BCRP")
    for other in (b, c, d):
        network.agree(a, other)
        other.cli("profile", "add", "--first-name", "From", "--last-name", other.name)
    only_b = a.cli("search", "--partnership", "b bcrp", "--json").json
    assert {r["origin"] for r in only_b["results"]} == {b.node_id}
    assert {r["origin"] for r in a.cli("search", "--partnership", "B", "--json").json["results"]} == {b.node_id}
    r = a.cli("search", "--partnership", "Twin BCRP", ok=False)
    assert r.code == 2 and c.node_id in r.err and d.node_id in r.err and "node ID" in r.err
    assert "no partnership named" in a.cli("search", "--partnership", "Nowhere", ok=False).err
    by_id = a.cli("search", "--partnership", c.node_id, "--json").json
    assert {r["origin"] for r in by_id["results"]} == {c.node_id}


def test_search_all_and_level_two_give_each_partnership_its_own_elapsed_time(network):
    from tests.nodes import Impostor
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(a, b)
    network.agree(a, c)
    port = int(c.url.rsplit(":", 1)[1])
    c.stop()
    hung = Impostor(port)  # accepts and never answers: C times out
    try:
        for args in (["search", "--all"], ["level-two"]):
            peers = {p["node_id"]: p for p in a.cli(*args, "--timeout", "1", "--json").json["peers"]}
            assert peers[c.node_id]["status"] == "timeout" and peers[c.node_id]["ms"] >= 1000
            # A's own rows are read before C's deadline can pass: a time of its own, not C's.
            assert peers[a.node_id]["ms"] < peers[c.node_id]["ms"]
            assert peers[b.node_id]["status"] == "ok"
    finally:
        hung.close()


def test_profile_delete_asks_and_refuses_without_a_terminal_or_yes(cli, monkeypatch):
    pid = cli("profile", "add", "--first-name", "Ann", "--last-name", "Able", "--json").json["id"]
    r = cli("profile", "delete", pid, ok=False)
    assert r.code == 2 and "--yes" in r.err
    assert cli("profile", "show", pid, "--json").json["id"] == pid

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    assert "not deleted" in cli("profile", "delete", pid, ok=False).err
    assert cli("profile", "show", pid, "--json").json["id"] == pid
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    cli("profile", "delete", pid)
    assert "no profile" in cli("profile", "show", pid, ok=False).err


def test_wrong_expect_does_not_print_the_other_nodes_real_id(network):
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    r = a.cli("peer", "add", b.url, "--expect", c.node_id, ok=False)
    assert "NOT adding it" in r.err and "Check the ID with the other partnership" in r.err
    assert b.node_id not in r.err
    j = a.cli("peer", "add", b.url, "--expect", c.node_id, "--json", ok=False)
    assert b.node_id not in j.err and json.loads(j.err)["error"]["code"] == "unauthenticated"


def test_contact_sheet_font_draws_latin_names_and_the_reference_fits(tmp_path):
    from PIL import Image
    from discnode.contactsheet import LINES, caption_font, render

    font = caption_font(13)
    tofu = font.getmask("\ue000")

    def drawn(ch: str) -> bool:
        mask = font.getmask(ch)
        return (mask.size, bytes(mask)) != (tofu.size, bytes(tofu))
    letters = "SeánÓŁukaszŻółćĞİøß"
    assert all(drawn(ch) for ch in letters), [ch for ch in letters if not drawn(ch)]
    ref = "GROES6S-4S6PN45-YMZ7UCA-OOSNXSO:abcdefghijkl"
    record = {"first_name": "Seán", "last_name": "Ó Ríordáin", "origin_name": "Łódź BCRP", "image": None,
              "origin": ref.split(":")[0], "id": ref.split(":")[1]}
    render([record], {}, tmp_path / "sheet.png")
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.width >= caption_font(LINES[2][0]).getlength(ref)  # the reference is drawn whole


def test_contact_sheet_font_falls_back_to_a_system_font_then_to_pillows(tmp_path, monkeypatch):
    from importlib import resources
    from PIL import ImageFont
    from discnode import contactsheet

    packaged = resources.files("font_source_sans_pro").joinpath("files/SourceSansPro-Regular.ttf")
    system = tmp_path / "DejaVuSans.ttf"  # stands in for Debian's fonts-dejavu-core
    system.write_bytes(packaged.read_bytes())
    contactsheet.caption_font.cache_clear()
    try:
        assert contactsheet._font_file() == str(packaged)  # the dependency comes first
        monkeypatch.setattr(contactsheet, "FONTS", ("no_such_font_package:x.ttf", str(system)))
        assert contactsheet._font_file() == str(system)
        assert isinstance(contactsheet.caption_font(13), ImageFont.FreeTypeFont)
        contactsheet.caption_font.cache_clear()
        monkeypatch.setattr(contactsheet, "FONTS", ("no_such_font_package:x.ttf", str(tmp_path / "none.ttf")))
        assert contactsheet._font_file() is None
        contactsheet.render([{"first_name": "Ann", "last_name": "Able", "origin": "N", "id": "x", "image": None}],
                            {}, tmp_path / "sheet.png")  # still draws, with Pillow's own font
        assert (tmp_path / "sheet.png").stat().st_size > 0
    finally:
        contactsheet.caption_font.cache_clear()


def _command_paths() -> list[list[str]]:
    import typer.main
    from discnode.cli import app
    paths: list[list[str]] = []

    def walk(command, prefix: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, prefix + [name])
        else:
            paths.append(prefix)
    walk(typer.main.get_command(app), [])
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=" ".join)
def test_every_command_answers_a_mistyped_option_with_one_json_error(cli, path):
    r = cli(*path, "--no-such-option", "--json", ok=False)
    assert r.code == 2 and r.out == "" and r.err.count("\n") == 1
    body = json.loads(r.err)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == "usage" and "--no-such-option" in body["error"]["message"]


def test_exports_to_a_file_are_never_forwarded_to_the_daemon():
    """A relative --output path means the administrator's folder, not the daemon's, and the file
    must be theirs: such commands run in the caller's own process."""
    from discnode.fastpath import forwardable
    assert forwardable(["search", "--csv"])
    for args in (["search", "--csv", "--output", "x.csv"], ["search", "--json", "-o", "x.json"],
                 ["search", "--json", "--output=x.json"]):
        assert not forwardable(args), args


from hypothesis import given, settings, strategies as st  # noqa: E402

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.text() |
    st.floats(allow_nan=False, allow_infinity=False) | st.dates(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=25)


@settings(max_examples=1000, deadline=None)
@given(data=_json_values)
def test_search_json_output_is_byte_for_byte_the_standard_librarys(data):
    """`search --json` (output.json_ascii, by orjson) writes exactly what json.dumps(indent=2,
    sort_keys=True, default=str) wrote: any text (controls, DEL, bidi, astral, lone surrogates),
    integers past 64 bits, floats, dates."""
    assert output.json_ascii(data) == json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
