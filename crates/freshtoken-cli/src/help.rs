//! The teaching parts of `--help`: where the secret comes from, and two or three examples
//! at the end of each command's help, so that a first run starts from a line that works.

use crate::exit;

/// `--version`: the version, the commit it was built from and the optional features built in
/// (see build.rs), so that a binary found on a runner says what it is.
pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("FRESHTOKEN_BUILD_INFO"),
    ")"
);

/// Where a secret is read from, in the order tried; `get` and `exec` say it.
const SECRET_FROM: &str = "\
The client secret comes from the first of: --client-secret-stdin, --client-secret-file PATH
(or FRESHTOKEN_CLIENT_SECRET_FILE), FRESHTOKEN_CLIENT_SECRET, GENESYSCLOUD_OAUTHCLIENT_SECRET,
then client_secret = { env = \"VAR\" } | { file = \"PATH\" } | { command = [\"...\"] } in the
profile of the config file. Never a flag: every user of the machine can read argv.
For private_key_jwt the key comes from --private-key PATH or FRESHTOKEN_PRIVATE_KEY.
For tls_client_auth and self_signed_tls_client_auth the certificate and its key come from
--client-cert PATH and --client-key PATH, or client_certificate and client_key in the profile.";

/// `get --help`'s end: where the secret comes from, examples, the exit codes.
pub(crate) fn get() -> String {
    format!(
        "{SECRET_FROM}

Examples:
  export FRESHTOKEN_TOKEN_URL=https://auth.example.com/oauth/token FRESHTOKEN_CLIENT_ID=ci
  export FRESHTOKEN_CLIENT_SECRET=\"$CI_SECRET\"
  curl -H \"Authorization: Bearer $(freshtoken get)\" https://api.example.com/v1/items
  freshtoken get --min-ttl 10m --format json     # valid 10 more minutes, as JSON
  freshtoken --profile prod get --format header | curl -H @- https://api.example.com/

{}",
        exit::HELP
    )
}

/// `exec --help`'s end, before what CMD gets: where the secret comes from, and examples.
pub(crate) fn exec() -> String {
    format!("{SECRET_FROM}\n\n{EXEC_EXAMPLES}")
}

/// `exec --help`'s examples.
const EXEC_EXAMPLES: &str = "\
Examples:
  freshtoken exec -- ./bulk-import.sh                   # $FRESHTOKEN_ACCESS_TOKEN in its env
  freshtoken exec --env GENESYSCLOUD_ACCESS_TOKEN -- python sync.py
  freshtoken exec --proxy --upstream https://api.example.com -- ./job   # hours long: use
                                                        # $FRESHTOKEN_PROXY_URL, never a 401";

/// `inspect --help`'s end.
pub(crate) const INSPECT: &str = "\
Examples:
  freshtoken inspect                       # the profile's cached token
  freshtoken get | freshtoken inspect -    # a fresh one, read from stdin
  freshtoken inspect \"$TOKEN\" --format json";

/// `status --help`'s end.
pub(crate) const STATUS: &str = "\
Examples:
  freshtoken status                        # every profile: endpoint, cache, token state
  freshtoken --profile prod status --format json
  FRESHTOKEN_CACHE=redis://cache:6379 freshtoken status";

/// `invalidate --help`'s end.
pub(crate) const INVALIDATE: &str = "\
Examples:
  freshtoken invalidate                    # after the token was revoked: the next get fetches
  freshtoken --profile prod invalidate";

/// `proxy --help`'s end.
pub(crate) const PROXY: &str = "\
Examples:
  freshtoken proxy --upstream https://api.example.com --listen 127.0.0.1:8080
  freshtoken proxy --provider genesys --region eu-west-1 --gateway   # for the Genesys SDKs
  curl http://127.0.0.1:8080/v1/items      # no Authorization needed: the proxy adds it
A profile with dpop = true gets DPoP-bound tokens: each request then gets Authorization: DPoP
and a fresh proof (docs/sender-constrained.md).";

/// `agent --help`'s end.
pub(crate) const AGENT: &str = "\
Examples:
  freshtoken agent --check                 # config, secrets, one token per profile; exit
  freshtoken agent                         # run (systemd: Type=simple, KillSignal=SIGTERM)
  freshtoken get --agent                   # a job's token from the running agent";

/// `dev-server --help`'s end.
pub(crate) const DEV_SERVER: &str = "\
Examples:
  freshtoken dev-server --ttl 30s          # prints its token URL; client dev-client:dev-secret
  freshtoken dev-server --fault outage-next=3 --fault delay=200
  curl -X POST 'http://127.0.0.1:PORT/__faults' -d outage   # switch a fault on while it runs";

/// `demo --help`'s end.
pub(crate) const DEMO: &str = "\
Examples:
  freshtoken demo                          # 600 calls over 10 s with 3 s tokens
  freshtoken demo --ttl 2s --duration 20s --workers 8";

/// `completions --help`'s end.
pub(crate) const COMPLETIONS: &str = "\
Examples:
  freshtoken completions bash > /etc/bash_completion.d/freshtoken
  freshtoken completions zsh > \"${fpath[1]}/_freshtoken\"
  freshtoken completions fish > ~/.config/fish/completions/freshtoken.fish";

#[cfg(test)]
mod tests {
    #[test]
    fn get_help_names_the_secret_sources() {
        assert!(super::get().starts_with(super::SECRET_FROM));
        assert!(super::exec().starts_with(super::SECRET_FROM));
    }
}
