"""``token create|list|revoke``: the admin commands both services' ``-cmd`` tools offer."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable

from .tokens import SCOPES, TokenStore, parse_duration, parse_scopes

# Makes an S3 access key: (user, scopes, expiry, note) → (token id, access key id, secret key).
S3Create = Callable[[str, tuple[str, ...], datetime.timedelta | None, str], tuple[int, str, str]]


def add_token_commands(sub: argparse._SubParsersAction, run: Callable[[argparse.Namespace, TokenStore], int],
                       set_func: Callable[[argparse.ArgumentParser, Callable], None],
                       s3_create: S3Create | None = None) -> None:
    """Add ``token`` with its ``create``, ``list`` and ``revoke`` subcommands to ``sub``;
    with ``s3_create``, ``create --s3`` makes an S3 access key instead."""
    token = sub.add_parser("token", help="create, list or revoke API tokens",
                           description="API tokens: sent as 'Authorization: Bearer <token>' or as the "
                           "password of HTTP Basic auth. Only a digest of each is stored.")
    verbs = token.add_subparsers(dest="token_command", metavar="verb", required=True)
    create = verbs.add_parser("create", help="make a token; it is printed once, alone on stdout")
    create.add_argument("--user", required=True, help="the user the token acts for")
    create.add_argument("--scope", default="upload,read",
                        help=f"comma-separated scopes: {', '.join(SCOPES)} (default: upload,read)")
    create.add_argument("--expires", default=None, help="lifetime, e.g. 90d, 12h (default: none)")
    create.add_argument("--note", default="", help="what the token is for, shown by 'token list'")
    if s3_create is not None:
        create.add_argument("--s3", action="store_true",
                            help="make an S3 access key for the S3 door: prints AWS_ACCESS_KEY_ID=... and "
                            "AWS_SECRET_ACCESS_KEY=... lines, ready for eval (the secret is also an API token)")
    create.set_defaults(token_func=_create, s3_create=s3_create)
    listing = verbs.add_parser("list", help="list the tokens (never their secrets)")
    listing.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    listing.set_defaults(token_func=_list)
    revoke = verbs.add_parser("revoke", help="end a token at once")
    revoke.add_argument("token_id", type=int, help="the token's id, as 'token list' shows it")
    revoke.set_defaults(token_func=_revoke)
    set_func(token, run)


def run_token_command(args: argparse.Namespace, store: TokenStore) -> int:
    """Run the ``token`` verb ``args`` names against ``store``."""
    return args.token_func(args, store)


def _create(args: argparse.Namespace, store: TokenStore) -> int:
    try:
        scopes = parse_scopes(args.scope)
        expires = parse_duration(args.expires) if args.expires else None
        if getattr(args, "s3", False):
            token_id, access_key, secret = args.s3_create(args.user, scopes, expires, args.note)
        else:
            token_id, secret = store.create(args.user, scopes, expires, args.note)
    except ValueError as exc:
        sys.stderr.write(f"token create: {exc}\n")
        return 2
    if getattr(args, "s3", False):
        sys.stderr.write(f"token {token_id} for {args.user} ({','.join(scopes)}): S3 access key {access_key}; "
                         "the secret is not shown again\n")
        sys.stdout.write(f"AWS_ACCESS_KEY_ID={access_key}\nAWS_SECRET_ACCESS_KEY={secret}\n")
        return 0
    sys.stderr.write(f"token {token_id} for {args.user} ({','.join(scopes)}); it is not shown again\n")
    sys.stdout.write(secret + "\n")
    return 0


def _list(args: argparse.Namespace, store: TokenStore) -> int:
    rows = store.rows()
    if args.as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    for row in rows:
        state = "revoked" if row["revoked"] else "active"
        sys.stdout.write("\t".join(str(item) for item in (
            row["id"], row["user"], row["scopes"], state, row["created"], row["expires"] or "never",
            row["last_used"] or "unused", row["note"])) + "\n")
    return 0


def _revoke(args: argparse.Namespace, store: TokenStore) -> int:
    if not store.revoke(args.token_id):
        sys.stderr.write(f"token revoke: no active token {args.token_id}\n")
        return 1
    sys.stdout.write(f"token {args.token_id} revoked\n")
    return 0
