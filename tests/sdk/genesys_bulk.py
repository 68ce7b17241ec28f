#!/usr/bin/env python3
"""A bulk job as a Genesys Cloud Python SDK script runs one: GETs and PATCHes of users.

Test-only driver: the integration tests run it with the real `PureCloudPlatformClientV2`
(pinned in tests/sdk/requirements.txt, installed by scripts/test.sh into target/genesys-venv)
against the dev-server or a freshtoken gateway, and read the one JSON line it prints:

    {"sdk": "python", "mode": ..., "calls": N, "ok": N, "unauthorized": N, "errors": N,
     "token_client": ..., "max_version": N, "first_error": "401 bad.credentials", ...}

``token_client`` and ``max_version`` are read from the SDK's own models (``TokenInfo``,
``User``), so they show that it deserialized the answers, not only that they were 2xx;
``first_error`` is the status and Genesys error code of the first failed call.

Two modes, as the SDK can be pointed at an API:

- ``--mode host --base URL``: ``ApiClient(host=URL)`` with the access token given in the
  environment (``GENESYSCLOUD_ACCESS_TOKEN``; never on the command line), sent as it is.
- ``--mode gateway --gateway-host H --gateway-port P [--gateway-protocol http]
  [--path-login X] [--path-api Y]``: ``ApiClient.set_gateway(...)`` and then the SDK's own
  ``get_client_credentials_token(id, secret)`` with ``GENESYSCLOUD_OAUTHCLIENT_ID`` and
  ``GENESYSCLOUD_OAUTHCLIENT_SECRET``, as a script that authenticates itself does.

Each of ``--count`` rounds is a GET of a user and a PATCH of it at the version read, then a
pause of ``--pause`` seconds. The SDK never refreshes a client-credentials token and never
retries, so every 401 the API gives reaches the script and is counted.
"""

import argparse
import json
import os
import sys
import time

try:
    import PureCloudPlatformClientV2 as gc
    from PureCloudPlatformClientV2.rest import ApiException
except ImportError:
    sys.stderr.write(
        "genesys_bulk.py: the Genesys Python SDK is not installed here; run scripts/test.sh, or:\n"
        "  python3 -m venv target/genesys-venv && "
        "target/genesys-venv/bin/pip install --require-hashes -r tests/sdk/requirements.txt\n"
    )
    sys.exit(3)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["host", "gateway"], required=True)
    p.add_argument("--base", help="host mode: the API base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--gateway-host")
    p.add_argument("--gateway-port", type=int, default=-1)
    p.add_argument("--gateway-protocol", default="http")
    p.add_argument("--path-login", default=None)
    p.add_argument("--path-api", default=None)
    p.add_argument("--count", type=int, default=10, help="rounds of GET + PATCH")
    p.add_argument("--pause", type=float, default=0.1, help="seconds between rounds")
    p.add_argument("--users", type=int, default=3, help="distinct user ids to cycle through")
    a = p.parse_args()
    if a.mode == "host" and not a.base:
        p.error("--mode host needs --base")
    if a.mode == "gateway" and not a.gateway_host:
        p.error("--mode gateway needs --gateway-host")
    return a


def env(name):
    value = os.environ.get(name, "")
    if not value:
        sys.stderr.write(f"genesys_bulk.py: {name} is not set\n")
        sys.exit(2)
    return value


def client(a, counts):
    """An ApiClient set up as the mode says; in gateway mode it has logged in."""
    if a.mode == "host":
        api = gc.ApiClient(host=a.base.rstrip("/"))
        api.access_token = env("GENESYSCLOUD_ACCESS_TOKEN")
        return api
    api = gc.ApiClient()
    api.set_gateway(a.gateway_host, a.gateway_protocol, a.gateway_port, a.path_login, a.path_api)
    client_id = env("GENESYSCLOUD_OAUTHCLIENT_ID")
    secret = env("GENESYSCLOUD_OAUTHCLIENT_SECRET")
    counts["logins"] += 1
    api.get_client_credentials_token(client_id, secret)
    return api


def describe(e):
    """Status and error code of a failed call (Genesys' `code`, or OAuth's `error` for the
    login): never headers, never a token."""
    code = ""
    try:
        body = json.loads(e.body or "{}")
        code = body.get("code") or body.get("error") or ""
    except (ValueError, AttributeError):
        pass
    return f"{e.status} {code}".strip()


def call(counts, f, *args):
    counts["calls"] += 1
    try:
        result = f(*args)
        counts["ok"] += 1
        return result
    except ApiException as e:
        if e.status == 401:
            counts["unauthorized"] += 1
        else:
            counts["errors"] += 1
        counts.setdefault("first_error", describe(e))
    except Exception as e:  # a model the SDK cannot deserialize, a refused connection
        counts["errors"] += 1
        counts.setdefault("first_error", type(e).__name__)
    return None


def main():
    a = parse_args()
    counts = {"sdk": "python", "sdk_version": "269.0.0", "mode": a.mode,
              "calls": 0, "ok": 0, "unauthorized": 0, "errors": 0, "logins": 0}
    try:
        api = client(a, counts)
    except ApiException as e:
        counts["login_error"] = describe(e)
        print(json.dumps(counts), flush=True)
        return 1
    users = gc.UsersApi(api)
    tokens = gc.TokensApi(api)
    me = call(counts, tokens.get_tokens_me)
    if me is not None and me.o_auth_client is not None:
        # What the SDK's TokenInfo model made of the answer: whom the token belongs to.
        counts["token_client"] = me.o_auth_client.id
    for i in range(a.count):
        user_id = f"bulk-{i % max(a.users, 1)}"
        user = call(counts, users.get_user, user_id)
        version = user.version if user is not None else 1
        body = gc.UpdateUser()
        body.version = version
        body.department = f"bulk round {i}"
        updated = call(counts, users.patch_user, user_id, body)
        if updated is not None and updated.version is not None:
            # The version the server moved the user to, as the SDK's User model read it.
            counts["max_version"] = max(counts.get("max_version", 0), updated.version)
        if a.pause > 0 and i + 1 < a.count:
            time.sleep(a.pause)
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
