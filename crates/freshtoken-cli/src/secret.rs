//! Reading the client secret and the private key from where the user keeps them: standard
//! input, a file, the environment, or a command (a secret manager's CLI).
//!
//! Apart from settings because this is the one place a secret is touched before a request
//! holds it, and because reading one can fail in ways a pipeline must hear about in one
//! line: a file readable by others, a command that waits for a login nobody will type.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use freshtoken::AuthMethod;
use freshtoken::internal::regular_file::{self, Symlinks};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{ConfigFile, IdentitySource, ProfileConfig, SecretSource};
use crate::env;
use crate::exit::{CliError, CliResult};

/// Largest secret read from any source. A PEM private key is a few KiB; more is a mistake
/// (the wrong file, a command that prints a whole vault), and is refused rather than cut.
const MAX_SECRET: usize = 64 * 1024;

/// How long a secret command may run. A secret manager's CLI answers within seconds; one
/// that waits for a login prompt must not hang the pipeline step that asked.
pub(crate) const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// Where a secret comes from, decided but not yet read.
#[derive(Debug, Clone)]
pub(crate) enum SecretSpec {
    Stdin,
    File(PathBuf),
    Env(&'static str),
    Config(SecretSource),
    /// Read already (the agent reads a profile's secrets to see whether they changed, and
    /// builds its source from the same reading); an error is that reading's message.
    Read(Result<SecretString, String>),
    Missing,
}

impl SecretSpec {
    /// Where the value comes from, for messages: a path, a variable, a command's name.
    pub(crate) fn origin(&self) -> String {
        match self {
            SecretSpec::Stdin => "standard input".to_owned(),
            SecretSpec::File(path) | SecretSpec::Config(SecretSource::File(path)) => {
                path.display().to_string()
            }
            SecretSpec::Env(var) => format!("${var}"),
            SecretSpec::Config(SecretSource::Env(var)) => format!("${var}"),
            SecretSpec::Config(SecretSource::Command(argv)) => format!(
                "command {:?}",
                argv.first().map(String::as_str).unwrap_or("")
            ),
            SecretSpec::Read(_) => "the config file".to_owned(),
            SecretSpec::Missing => "nowhere".to_owned(),
        }
    }
}

/// Which secret is being read, for messages and for how its text is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// `ClientSecret` is the name the OAuth specs give it.
#[allow(clippy::enum_variant_names)]
pub(crate) enum Secret {
    ClientSecret,
    PrivateKey,
    /// A profile's `cache_key`, which seals its Redis values.
    CacheKey,
    /// A PEM client certificate (not a secret, but read from the same kinds of sources).
    ClientCertificate,
    /// The private key of the client certificate.
    ClientKey,
    /// A profile's `dpop_key` (a PEM).
    DpopKey,
}

impl Secret {
    fn name(self) -> &'static str {
        match self {
            Secret::ClientSecret => "client secret",
            Secret::PrivateKey => "private key",
            Secret::CacheKey => "cache key",
            Secret::ClientCertificate => "client certificate",
            Secret::ClientKey => "client key",
            Secret::DpopKey => "DPoP key",
        }
    }
}

/// Reads the secret `spec` names. `method` only shapes the message for a missing one.
pub(crate) fn read_secret(
    spec: &SecretSpec,
    what: Secret,
    method: AuthMethod,
) -> CliResult<SecretString> {
    let name = what.name();
    let (text, from) = match spec {
        SecretSpec::Read(read) => return read.clone().map_err(CliError::usage),
        SecretSpec::Stdin => (
            read_capped(std::io::stdin())
                .map_err(|e| CliError::usage(format!("cannot read the {name} from stdin: {e}")))?,
            "standard input".to_owned(),
        ),
        SecretSpec::File(path) | SecretSpec::Config(SecretSource::File(path)) => {
            (read_secret_file(path, name)?, path.display().to_string())
        }
        SecretSpec::Env(var) => (env_secret(var, name)?, format!("${var}")),
        SecretSpec::Config(SecretSource::Env(var)) => (env_secret(var, name)?, format!("${var}")),
        SecretSpec::Config(SecretSource::Command(argv)) => (
            run_secret_command(argv, name, COMMAND_LIMIT)?,
            format!(
                "command {:?}",
                argv.first().map(String::as_str).unwrap_or("")
            ),
        ),
        SecretSpec::Missing => {
            let how = match what {
                Secret::ClientSecret => format!(
                    "set {} (or {} for Genesys Cloud), --client-secret-file, --client-secret-stdin or client_secret in the profile",
                    env::CLIENT_SECRET,
                    env::GENESYS_CLIENT_SECRET
                ),
                Secret::PrivateKey => format!(
                    "set --private-key PATH, {} (the PEM itself) or private_key in the profile",
                    env::PRIVATE_KEY
                ),
                Secret::CacheKey => "set cache_key in the profile".to_owned(),
                Secret::ClientCertificate => {
                    "set --client-cert PATH or client_certificate in the profile".to_owned()
                }
                Secret::ClientKey => {
                    "set --client-key PATH or client_key in the profile".to_owned()
                }
                Secret::DpopKey => "set dpop_key in the profile, or dpop = true".to_owned(),
            };
            return Err(CliError::usage(format!(
                "auth method {method} needs a {name}: {how}"
            )));
        }
    };
    let text = match what {
        Secret::ClientSecret | Secret::CacheKey => text.trim_end_matches(['\n', '\r']).to_owned(),
        Secret::PrivateKey | Secret::ClientCertificate | Secret::ClientKey | Secret::DpopKey => {
            text
        }
    };
    if text.trim().is_empty() {
        return Err(CliError::usage(format!("the {name} from {from} is empty")));
    }
    Ok(SecretString::from(text))
}

/// The secrets a profile of the config file names, each read once.
///
/// The agent keeps a digest of them for each running profile and compares it on reload, so
/// that a secret file rewritten in place, or a command that now prints another secret,
/// renews the profile although its config did not change. A profile it renews is built from
/// this same reading, so a secret command runs once per reload, not twice.
#[derive(Debug)]
pub(crate) struct ConfigSecrets {
    client_secret: Option<Result<SecretString, String>>,
    private_key: Option<Result<SecretString, String>>,
    /// The client certificate and its key of a mutual-TLS profile: a renewed certificate
    /// renews the profile. Read here for the digest only; the profile reads them again.
    client_certificate: Option<Result<SecretString, String>>,
    client_key: Option<Result<SecretString, String>>,
    /// The profile's own DPoP key: a key rewritten in place renews the profile (its tokens
    /// are bound to the old one). A made key is the state folder's, never rewritten.
    dpop_key: Option<Result<SecretString, String>>,
}

impl ConfigSecrets {
    /// Reads what `profile` names and its auth method uses, keeping a failure as its message:
    /// a profile that does not need the secret must not fail for it, and one that does says
    /// why when it is built. A source whose secret is not used is never read nor run: a
    /// `private_key = { command = … }` beside `client_secret_basic` stays unrun.
    pub(crate) fn read(profile: &ProfileConfig) -> Self {
        // An auth method that does not parse fails when the profile is built; read nothing.
        let method = match &profile.auth_method {
            Some(m) => m.parse::<AuthMethod>().ok(),
            None => Some(AuthMethod::default()),
        };
        let uses = |needed: fn(AuthMethod) -> bool| method.is_some_and(needed);
        // The auth method only shapes the message for a missing secret, which a configured
        // one never is.
        let read = |source: &Option<SecretSource>, what| {
            source.as_ref().map(|s| {
                read_secret(
                    &SecretSpec::Config(s.clone()),
                    what,
                    AuthMethod::ClientSecretBasic,
                )
                .map_err(|e| e.message)
            })
        };
        Self {
            client_secret: uses(AuthMethod::needs_secret)
                .then(|| read(&profile.client_secret, Secret::ClientSecret))
                .flatten(),
            private_key: uses(AuthMethod::needs_private_key)
                .then(|| read(&profile.private_key, Secret::PrivateKey))
                .flatten(),
            client_certificate: uses(AuthMethod::needs_client_certificate)
                .then(|| read(&profile.client_certificate, Secret::ClientCertificate))
                .flatten(),
            client_key: uses(AuthMethod::needs_client_certificate)
                .then(|| read(&profile.client_key, Secret::ClientKey))
                .flatten(),
            dpop_key: (profile.dpop != Some(false))
                .then(|| read(&profile.dpop_key, Secret::DpopKey))
                .flatten(),
        }
    }

    /// The client secret as read (a copy), or `None` when the profile uses none.
    pub(crate) fn client_secret(&self) -> Option<Result<SecretString, String>> {
        self.client_secret.clone()
    }

    /// SHA-256 over the secrets (and a mutual-TLS profile's certificate and key, and a DPoP
    /// key of the profile's own, each only when the profile has one); only this
    /// is kept, never a secret. A secret that cannot be read hashes the same whatever the
    /// reason, and differs from every secret that can.
    pub(crate) fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        let certificate = [&self.client_certificate, &self.client_key, &self.dpop_key];
        for read in [&self.client_secret, &self.private_key]
            .into_iter()
            .chain(certificate.into_iter().filter(|r| r.is_some()))
        {
            match read {
                None => hash.update([0]),
                Some(Ok(secret)) => {
                    let bytes = secret.expose_secret().as_bytes();
                    hash.update([1]);
                    hash.update((bytes.len() as u64).to_le_bytes());
                    hash.update(bytes);
                }
                Some(Err(_)) => hash.update([2]),
            }
        }
        hash.finalize().into()
    }

    /// What to use in place of a `SecretSpec::Config` for the client secret and the key.
    pub(crate) fn into_specs(self) -> (Option<SecretSpec>, Option<SecretSpec>) {
        (
            self.client_secret.map(SecretSpec::Read),
            self.private_key.map(SecretSpec::Read),
        )
    }
}

/// The environment variables that secrets are read from: the fixed ones
/// (`FRESHTOKEN_CLIENT_SECRET`, `GENESYSCLOUD_OAUTHCLIENT_SECRET`, `FRESHTOKEN_PRIVATE_KEY`,
/// `FRESHTOKEN_REDIS_PASSWORD`) and every one a `{ env = … }` source of `file` names, in any
/// profile, used or not. `exec` keeps them all from its child: CMD is given a token, not the
/// credentials that buy more.
pub(crate) fn secret_variables(file: Option<&ConfigFile>) -> Vec<String> {
    let mut names: Vec<String> = [
        env::CLIENT_SECRET,
        env::GENESYS_CLIENT_SECRET,
        env::PRIVATE_KEY,
        env::REDIS_PASSWORD,
    ]
    .map(str::to_owned)
    .into();
    let profiles = file.into_iter().flat_map(|f| f.profiles.values());
    let profiles: Vec<&ProfileConfig> = profiles.collect();
    for source in profiles.iter().flat_map(|p| {
        [
            &p.client_secret,
            &p.private_key,
            &p.cache_key,
            &p.client_key,
            &p.dpop_key,
        ]
    }) {
        if let Some(SecretSource::Env(var)) = source
            && !names.contains(var)
        {
            names.push(var.clone());
        }
    }
    // Identity tokens buy access tokens too, and so does GitHub's request token.
    names.push(GITHUB_REQUEST_TOKEN.to_owned());
    for source in profiles
        .iter()
        .flat_map(|p| [&p.client_assertion, &p.subject_token, &p.actor_token])
    {
        if let Some(IdentitySource::Env(var) | IdentitySource::Gitlab { env: var }) = source
            && !names.contains(var)
        {
            names.push(var.clone());
        }
    }
    names
}

/// What a GitHub Actions job presents to get identity tokens.
pub(crate) const GITHUB_REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

fn env_secret(var: &str, name: &str) -> CliResult<String> {
    std::env::var(var).map_err(|_| {
        CliError::usage(format!(
            "the {name} comes from ${var}, which is not set (or not UTF-8)"
        ))
    })
}

fn read_secret_file(path: &Path, name: &str) -> CliResult<String> {
    let cannot = |e: std::io::Error| {
        CliError::usage(format!(
            "cannot read the {name} file {}: {e}",
            path.display()
        ))
    };
    // A regular file only, opened without blocking: a FIFO would hang the read for good.
    let (file, meta) = regular_file::open(path, Symlinks::Follow).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::InvalidInput && name == "client secret" {
            " (to pipe the secret in, use --client-secret-stdin)"
        } else {
            ""
        };
        CliError::usage(format!(
            "cannot read the {name} file {}: {e}{hint}",
            path.display()
        ))
    })?;
    // A certificate is public; everything else read here is not.
    if meta.mode() & 0o077 != 0 && name != "client certificate" {
        tracing::warn!(
            "{name} file {} is readable by others (mode {:o}); chmod 600 it",
            path.display(),
            meta.mode() & 0o777
        );
    }
    read_capped(file).map_err(cannot)
}

/// Reads text up to [`MAX_SECRET`]; more is an error, never a secret cut short.
fn read_capped(from: impl Read) -> std::io::Result<String> {
    let mut s = String::new();
    from.take(MAX_SECRET as u64 + 1).read_to_string(&mut s)?;
    if s.len() > MAX_SECRET {
        return Err(std::io::Error::other(format!(
            "longer than {} KiB",
            MAX_SECRET / 1024
        )));
    }
    Ok(s)
}

/// Runs a secret command (argv, no shell) and returns what it printed. It gets `limit` to
/// print and exit; stdin is closed, stderr is the user's. Its output is never shown, in any
/// error: it may be part of the secret.
pub(crate) fn run_secret_command(
    argv: &[String],
    name: &str,
    limit: Duration,
) -> CliResult<String> {
    let Some((program, args)) = argv.split_first() else {
        return Err(CliError::usage("the secret command is empty"));
    };
    let failed = |why: String| CliError::usage(format!("the {name} command {program:?} {why}"));
    // A child process's time limit is real elapsed time: the monotonic clock is the point.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| CliError::usage(format!("cannot run the {name} command {program:?}: {e}")))?;
    let Some(stdout) = child.stdout.take() else {
        return Err(failed("has no output pipe".into()));
    };
    // A thread reads, so that the wait for its output can end: a command may keep its
    // output open for good (or hand it to something it leaves behind).
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let read = stdout
            .take(MAX_SECRET as u64 + 1)
            .read_to_end(&mut out)
            .map(|_| out);
        let _ = tx.send(read);
    });
    let out = match rx.recv_timeout(limit) {
        Ok(Ok(out)) if out.len() <= MAX_SECRET => out,
        Ok(Ok(_)) => {
            stop(&mut child);
            return Err(failed(format!(
                "printed more than {} KiB",
                MAX_SECRET / 1024
            )));
        }
        Ok(Err(e)) => {
            stop(&mut child);
            return Err(failed(format!("could not be read: {e}")));
        }
        Err(_) => {
            stop(&mut child);
            return Err(failed(format!(
                "did not finish within {}s; stopped",
                limit.as_secs_f32()
            )));
        }
    };
    // Its output has ended; it should end too, within what is left of the limit.
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                stop(&mut child);
                return Err(failed(format!(
                    "closed its output but did not exit within {}s; stopped",
                    limit.as_secs_f32()
                )));
            }
            Err(e) => return Err(failed(format!("could not be waited for: {e}"))),
        }
    };
    if !status.success() {
        return Err(failed(format!("failed ({status})")));
    }
    String::from_utf8(out).map_err(|_| failed("printed something that is not UTF-8".into()))
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn a_command_prints_the_secret() -> CliResult<()> {
        let out = run_secret_command(&sh("printf 'hunter2\\n'"), "client secret", COMMAND_LIMIT)?;
        assert_eq!(out, "hunter2\n");
        Ok(())
    }

    #[test]
    fn a_command_that_hangs_is_stopped_at_the_limit() {
        let limit = Duration::from_millis(300);
        // Proves "did not wait 30 s" in real time.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let e = run_secret_command(&sh("exec sleep 30"), "client secret", limit).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            e.message,
            "the client secret command \"sh\" did not finish within 0.3s; stopped"
        );
        // Its output closed, the process still running.
        let e = run_secret_command(
            &sh("printf s3cr3t; exec >&-; exec sleep 30"),
            "client secret",
            limit,
        )
        .unwrap_err();
        assert!(
            e.message.contains("closed its output but did not exit"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("s3cr3t"));
    }

    #[test]
    fn endless_output_is_refused_not_cut() {
        let e = run_secret_command(&sh("exec yes"), "private key", COMMAND_LIMIT).unwrap_err();
        assert_eq!(
            e.message,
            "the private key command \"sh\" printed more than 64 KiB"
        );
    }

    #[test]
    fn a_failing_command_is_named_without_its_output() {
        let e = run_secret_command(&sh("printf s3cr3t; exit 3"), "client secret", COMMAND_LIMIT)
            .unwrap_err();
        assert!(
            e.message.contains("failed (exit status: 3)"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("s3cr3t"));
    }

    #[test]
    fn a_large_file_is_refused_not_cut() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("key.pem");
        std::fs::write(&path, vec![b'k'; MAX_SECRET + 1])?;
        let e = read_secret_file(&path, "private key").unwrap_err();
        assert!(e.message.ends_with("longer than 64 KiB"), "{}", e.message);
        std::fs::write(&path, vec![b'k'; MAX_SECRET])?;
        assert!(read_secret_file(&path, "private key").is_ok());
        Ok(())
    }

    #[test]
    fn the_digest_moves_with_the_secret_and_debug_hides_it() {
        let read = |s: &str| ConfigSecrets {
            client_secret: Some(Ok(SecretString::from(s.to_owned()))),
            private_key: None,
            client_certificate: None,
            client_key: None,
            dpop_key: None,
        };
        assert_eq!(read("a").digest(), read("a").digest());
        assert_ne!(read("a").digest(), read("b").digest());
        let failed = ConfigSecrets {
            client_secret: Some(Err("cannot read".into())),
            private_key: None,
            client_certificate: None,
            client_key: None,
            dpop_key: None,
        };
        assert_ne!(failed.digest(), read("").digest());
        // A renewed certificate (or key) of a mutual-TLS profile moves it too.
        let mtls = |cert: &str| ConfigSecrets {
            client_secret: None,
            private_key: None,
            client_certificate: Some(Ok(SecretString::from(cert.to_owned()))),
            client_key: Some(Ok(SecretString::from("key".to_owned()))),
            dpop_key: None,
        };
        assert_eq!(mtls("a").digest(), mtls("a").digest());
        assert_ne!(mtls("a").digest(), mtls("b").digest());
        // So does a DPoP key of the profile's own, rewritten in place.
        let dpop = |key: &str| ConfigSecrets {
            dpop_key: Some(Ok(SecretString::from(key.to_owned()))),
            ..read("s")
        };
        assert_eq!(dpop("k1").digest(), dpop("k1").digest());
        assert_ne!(dpop("k1").digest(), dpop("k2").digest());
        assert_ne!(dpop("k1").digest(), read("s").digest());
        assert!(!format!("{:?}", read("hunter2")).contains("hunter2"));
    }
}
