# SPDX-License-Identifier: Apache-2.0
"""CURVE to a broker (docs/security.md), as the C++ ``scale0::security::curve_client``.

Keys are Z85 text (40 characters); certificates are CZMQ's zcert files (ZPL text), as
``scale0 keygen NAME`` writes them: NAME holds the public key, NAME_secret both. No cryptography
here: key pairs come from libzmq (``zmq.curve_keypair``), the handshake is libzmq's CURVE.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Tuple

import zmq
from zmq.utils import z85

from ._types import Error

_Z85_ALPHABET = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")


def valid_z85_key(key: str) -> bool:
    """True for 40 characters of the Z85 alphabet that decode to 32 bytes."""
    if len(key) != 40 or not set(key) <= _Z85_ALPHABET:
        return False
    try:
        return len(z85.decode(key)) == 32  # type: ignore[no-untyped-call]
    except Exception:  # noqa: BLE001 - a group over 2^32 - 1
        return False


def _zpl_value(v: str) -> str:
    """A ZPL value: "quoted", 'quoted', or bare up to a comment or the end."""
    v = v.strip(" \t\r")
    if v[:1] in ("'", '"'):
        end = v.find(v[0], 1)
        return "" if end < 0 else v[1:end]
    return v.split("#", 1)[0].strip(" \t\r")


def parse_certificate(text: str, where: str = "certificate") -> Tuple[str, str]:
    """(public key, secret key) of a zcert certificate's text (the secret key is "" in a public
    certificate): the ``curve`` section's ``public-key`` and ``secret-key``, as the C++ library
    reads them. Error(400) naming ``where`` and what is wrong."""
    public = secret = ""
    in_curve = False
    for line in text.split("\n"):
        content = line.strip(" \t\r")
        if not content or content.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:  # a top-level name: metadata, curve, ...
            in_curve = content.split("=", 1)[0].strip(" \t\r") == "curve"
            continue
        if not in_curve or indent != 4 or "=" not in content:
            continue  # the curve section's own names only
        name, _, value = content.partition("=")
        name = name.strip(" \t\r")
        if name == "public-key":
            public = _zpl_value(value)
        elif name == "secret-key":
            secret = _zpl_value(value)
    if not public and not secret:
        raise Error(400, "%s: not a certificate (no curve public-key or secret-key)" % where)
    if public and not valid_z85_key(public):
        raise Error(400, "%s: public-key is not a 40-character Z85 key" % where)
    if secret:
        if not valid_z85_key(secret):
            raise Error(400, "%s: secret-key is not a 40-character Z85 key" % where)
        derived = zmq.curve_public(secret.encode()).decode()
        if not public:
            public = derived
        if public != derived:
            raise Error(400, "%s: public-key does not belong to secret-key" % where)
    return public, secret


def load_certificate(path: str) -> Tuple[str, str]:
    """(public key, secret key) of a zcert file (see parse_certificate)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        raise Error(400, "cannot read %s: %s" % (path, e.strerror or e)) from None
    return parse_certificate(text, path)


def public_key_from(key_or_path: str) -> str:
    """A public key given as Z85 text, or as the path of a certificate (public or secret)."""
    s = key_or_path.strip(" \t\r")
    if valid_z85_key(s):
        return s
    if os.path.exists(s):
        return load_certificate(s)[0]
    raise Error(400, "%r is neither a 40-character Z85 key nor a certificate file" % s[:60])


class Curve:
    """A client's or worker's CURVE settings: the broker's public key (Z85, or its certificate
    file) and, optionally, its own key pair: a secret certificate file (``cert``,
    ``scale0 keygen``'s NAME_secret) or a Z85 pair (``public_key``, ``secret_key``; the public key
    may be left out). Without one, every connection gets a fresh ephemeral pair, which only a
    broker with ``--client-keys any`` lets in (on its frontend). Error(400) when a key is not
    valid or a pair does not belong together; Error(501) when libzmq has no CURVE.
    """

    __slots__ = ("server_key", "public_key", "secret_key")

    def __init__(self, server_key: str, cert: Optional[str] = None, *, public_key: Optional[str] = None,
                 secret_key: Optional[str] = None) -> None:
        if not zmq.has("curve"):
            raise Error(501, "this libzmq has no CURVE (built without libsodium)")
        self.server_key = public_key_from(server_key)
        if cert is not None and (public_key or secret_key):
            raise Error(400, "give a CURVE certificate or a key pair, not both")
        pub, sec = public_key or "", secret_key or ""
        if cert is not None:
            pub, sec = load_certificate(cert)
            if not sec:
                raise Error(400, "%s: a public certificate; the own key pair needs the secret one "
                                 "(NAME_secret)" % cert)
        elif sec:
            if not valid_z85_key(sec):
                raise Error(400, "the CURVE secret key is not a 40-character Z85 key")
            derived = zmq.curve_public(sec.encode()).decode()
            if pub and pub != derived:
                raise Error(400, "the CURVE key pair does not belong together")
            pub = derived
        elif pub:
            raise Error(400, "a CURVE public key without its secret key")
        self.public_key = pub  # "" and "": an ephemeral pair per connection
        self.secret_key = sec

    @property
    def ephemeral(self) -> bool:
        return not self.secret_key

    def apply(self, sock: "zmq.Socket[Any]") -> None:
        """Makes ``sock`` a CURVE client of the broker (before connect)."""
        if self.secret_key:
            pub, sec = self.public_key.encode(), self.secret_key.encode()
        else:
            pub, sec = zmq.curve_keypair()
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_key.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, pub)
        sock.setsockopt(zmq.CURVE_SECRETKEY, sec)

    def __repr__(self) -> str:  # never the secret key
        return "Curve(server_key=%r, public_key=%r)" % (self.server_key, self.public_key or "ephemeral")


def curve_from(server_key: Optional[str], cert: Optional[str] = None) -> Optional[Curve]:
    """The CLI's ``--curve-server-key KEY|FILE`` and ``--curve-cert FILE``: None without a server
    key (no CURVE; Error(400) when only a certificate is given)."""
    if not server_key:
        if cert:
            raise Error(400, "--curve-cert needs --curve-server-key (the broker's public key)")
        return None
    return Curve(server_key, cert or None)
