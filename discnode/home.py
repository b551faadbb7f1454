"""The node's home folder: config.toml, identity key, TLS certificate, database and images.

    HOME/config.toml        [node] name, host, port, public_url, announce, lawful_basis; [retention] profiles_months,
                            audit_months (plain settings; no secrets)
    HOME/identity.key       Ed25519 seed, base64url, mode 0600 (the *current* key: see keys.py);
                            or sealed with a passphrase (keyfile.py)
    (not in HOME)           the committed next key, written by init and `key rotate` beside the home
                            for the administrator to move to the safe (spec 4.6)
    HOME/tls.key, tls.crt   the HTTPS key (0600) and self-signed certificate
    HOME/discnode.db        SQLite (WAL), shared by `serve` and the other commands
    HOME/images/            content-addressed JPEGs and thumbnails
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from . import PROTOCOL_VERSION, keys, schemas, store
from .documents.succession import new_inception, verify_chain
from .errors import Conflict, InvalidInput, NotFound
from .identity import (Identity, certificate_fingerprint, make_tls_certificate, save_identity,
                       save_next_key, write_secret)
from .consent import FEATURES, SHARE_KINDS
from .signing import sign_document
from .untrusted import peer_url

DESCRIPTOR_PATH = "/.well-known/discnode"


def default_home() -> Path:
    return Path(os.environ.get("DISCNODE_HOME") or platformdirs.user_data_dir("discnode"))


@dataclass(frozen=True)
class Config:
    name: str
    host: str = "127.0.0.1"
    port: int = 8443
    #: The address peers should use, if not host:port (e.g. behind NAT); defaults to host:port.
    public_url: str = ""
    #: Announce the node on the local network (mDNS), on the interfaces it listens on. Off unless
    #: asked for: an on-premises node should not announce itself on a shop's guest Wi-Fi.
    announce: bool = False
    #: The partnership's lawful basis for sharing, in its own words (shown by `peer terms` as this
    #: node's policy: the signed terms of protocol v1 carry none). Empty: not stated.
    lawful_basis: str = ""
    #: Retention ceiling: a profile is deleted this many months after its last incident (or its
    #: creation, if it has none) unless a review has kept it longer (retention.py).
    retention_months: int = 24
    #: Audit entries older than this many months are archived to a file (auditarchive.py); 0: never.
    audit_months: int = 24

    def validated(self) -> "Config":
        if not self.name.strip() or len(self.name) > 100:
            raise InvalidInput("the partnership name must be 1 to 100 characters")
        if not 0 < self.port < 65536:
            raise InvalidInput(f"port {self.port} is not 1 to 65535")
        if not self.host or any(c in self.host for c in "/ @"):
            raise InvalidInput(f"host {self.host!r} is not a host name or address")
        if self.public_url:
            peer_url(self.public_url, "public URL")
        if len(self.lawful_basis) > 1000:
            raise InvalidInput("lawful_basis is at most 1000 characters")
        if not 1 <= self.retention_months <= 120:
            raise InvalidInput(f"retention profiles_months {self.retention_months} is not 1 to 120")
        if not 0 <= self.audit_months <= 240:
            raise InvalidInput(f"retention audit_months {self.audit_months} is not 0 (never) to 240")
        return self

    @property
    def url(self) -> str:
        if self.public_url:
            return peer_url(self.public_url, "public URL")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


class Home:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    # --- creation and opening ---

    #: Where `create` wrote the committed next key (for init to tell the administrator).
    next_key_file: Path | None = None

    @classmethod
    def create(cls, path: Path, config: Config, next_key_file: Path | None = None, *,
               passphrase: str | None = None) -> "Home":
        """A new node, with its inception key event committing to a next key, which is written to
        next_key_file (default: beside the home, never inside it) for the administrator to keep
        offline. With `passphrase`, the identity key is kept sealed with it (keyfile.py)."""
        config = config.validated()
        path = Path(path)
        if (path / "config.toml").exists() or (path / "identity.key").exists():
            raise Conflict(f"{path} already holds a node; refusing to overwrite it")
        if next_key_file is None:
            next_key_file = default_next_key_file(path)
            next_key_file.parent.mkdir(parents=True, exist_ok=True)  # the home's own parent, as mkdir below
        next_key_file = Path(next_key_file)
        if next_key_file.exists():
            raise Conflict(f"{next_key_file} exists; refusing to overwrite it (move it to the safe, or give "
                           "--next-key-out)")
        if next_key_file.resolve().is_relative_to(path.resolve()):
            raise InvalidInput("the next key must not be kept in the node home: a thief who copies the home "
                               "would hold it too; give --next-key-out outside it")
        if not next_key_file.parent.is_dir():
            raise InvalidInput(f"cannot write the next key to {next_key_file}: no folder {next_key_file.parent}")
        existed = path.exists()
        wrote_next = False
        try:
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o700)
            identity = Identity.generate()
            following = Identity.generate()
            if passphrase is None:
                save_identity(identity, path / "identity.key")
            else:  # sealed before it is written: the plain key never touches the disk
                from . import keyfile
                write_secret(path / "identity.key", keyfile.sealed_key(identity, passphrase))
            cert, key = make_tls_certificate(identity.node_id, config.host)
            write_secret(path / "tls.key", key)
            (path / "tls.crt").write_bytes(cert)
            (path / "images").mkdir(exist_ok=True)
            home = cls(path)
            home.__dict__["identity"] = identity  # in hand: not read back (nor its passphrase asked)
            home.write_config(config)
            store.migrate(home.db)
            keys.record(home.db, verify_chain([new_inception(identity, following.public_key, store.now_ts())]),
                        own=True)
            save_next_key(following, next_key_file, identity.node_id)
            wrote_next = True
            home.next_key_file = next_key_file
            return home
        except BaseException:
            # init is all or nothing: leave no half-made node behind.
            if wrote_next:
                next_key_file.unlink(missing_ok=True)
            if "home" in locals():
                home.close()
            if existed:
                for name in ("identity.key", "tls.key", "tls.crt", "config.toml", "discnode.db",
                             "discnode.db-wal", "discnode.db-shm"):
                    (path / name).unlink(missing_ok=True)
                shutil.rmtree(path / "images", ignore_errors=True)
            else:
                shutil.rmtree(path, ignore_errors=True)
            raise

    @classmethod
    def open(cls, path: Path) -> "Home":
        home = cls(path)
        if not (home.path / "config.toml").exists():
            raise NotFound(f"no node at {home.path}; run `discnode init --name NAME` first (or pass --home)")
        if "016_handling" in store.migrate(home.db):
            store.sign_missing_views(home.db, home.identity)
        return home

    def write_config(self, config: Config) -> None:
        tmp = self.path / "config.toml.tmp"
        tmp.write_text(tomli_w.dumps({"node": {"name": config.name, "host": config.host, "port": config.port,
                                               "public_url": config.public_url, "announce": config.announce,
                                               **({"lawful_basis": config.lawful_basis} if config.lawful_basis else {})},
                                      "retention": {"profiles_months": config.retention_months,
                                                    "audit_months": config.audit_months}}))
        os.replace(tmp, self.path / "config.toml")
        self.__dict__.pop("config", None)

    # --- parts ---

    @cached_property
    def config(self) -> Config:
        try:
            whole = tomllib.loads((self.path / "config.toml").read_text())
            data = whole["node"]
            announce = data.get("announce", False)
            if not isinstance(announce, bool):
                raise ValueError("announce must be true or false")
            kept = whole.get("retention", {})  # absent in homes made before retention was configurable
            if not isinstance(kept, dict):
                raise ValueError("[retention] must be a table")
            months = {k: kept.get(k, default) for k, default in (("profiles_months", 24), ("audit_months", 24))}
            if not all(type(v) is int for v in months.values()):
                raise ValueError("[retention] profiles_months and audit_months must be whole numbers")
            basis = data.get("lawful_basis", "")
            if not isinstance(basis, str):
                raise ValueError("lawful_basis must be text")
            return Config(name=data["name"], host=data["host"], port=int(data["port"]),
                          public_url=data.get("public_url", ""), announce=announce, lawful_basis=basis,
                          retention_months=months["profiles_months"], audit_months=months["audit_months"]).validated()
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, InvalidInput) as exc:
            raise InvalidInput(f"{self.path / 'config.toml'} is not a valid node config: {exc}") from None

    @cached_property
    def identity(self) -> Identity:
        """The current key, named by the node's key history (if it has one: nodes made before key
        events have none, and their ID is their only key's fingerprint)."""
        from . import keyfile
        key = keyfile.load(self.path / "identity.key")
        events = keys.own_events(self.db)
        if not events:
            return key
        held = keys.periods(events)[-1].public_key
        if held != key.public_key:
            raise InvalidInput(f"{self.path / 'identity.key'} is not the key this node's key history names as "
                               "current (a copy from before a key rotation?); restore the current key")
        return Identity(key.signing_key, inception_id=events[0]["node_id"])

    def key_events(self) -> list[dict[str, Any]]:
        return keys.own_events(self.db)

    def reload_identity(self) -> None:
        """Forget the cached key, ID and certificate after a rotation or a reset."""
        for cached in ("identity", "node_id", "tls_fingerprint"):
            self.__dict__.pop(cached, None)

    @cached_property
    def node_id(self) -> str:
        return self.identity.node_id

    @cached_property
    def db(self) -> store.DB:
        return store.connect(self.db_path)

    @property
    def db_path(self) -> Path:
        return self.path / "discnode.db"

    @property
    def images_root(self) -> Path:
        return self.path / "images"

    @property
    def tls_cert(self) -> Path:
        return self.path / "tls.crt"

    @property
    def tls_key(self) -> Path:
        return self.path / "tls.key"

    @cached_property
    def tls_fingerprint(self) -> str:
        return certificate_fingerprint(self.tls_cert.read_bytes())

    def descriptor(self) -> dict[str, Any]:
        """The node's signed descriptor: what peers need to reach and verify it."""
        doc = {
            "type": "descriptor",
            "v": PROTOCOL_VERSION,
            "node_id": self.node_id,
            "public_key": self.identity.public_key_b64,
            "name": self.config.name,
            "url": self.config.url,
            "tls_fingerprint": self.tls_fingerprint,
            "issued_at": store.now_ts(),
            "scopes": [*SHARE_KINDS, *FEATURES],
        }
        events = self.key_events()
        if events:
            doc["key_events"] = events
        signed = sign_document(doc, self.identity)
        schemas.validate("descriptor", signed)
        return signed

    def summary(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "name": self.config.name, "url": self.config.url,
                "public_key": self.identity.public_key_b64, "tls_fingerprint": self.tls_fingerprint,
                "home": str(self.path)}

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.conn.close()
            del self.__dict__["db"]


def default_next_key_file(home: Path) -> Path:
    """Beside the home, never in it: `HOME-next-key.txt`."""
    home = Path(home).absolute()
    return home.parent / f"{home.name}-next-key.txt"


def today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()
