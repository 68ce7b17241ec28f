//! The precedence rules, as a table over every key: flag > environment > file > default, the
//! endpoint taken whole from one source, secrets named but never read. Everything here runs
//! on plain values — an in-memory environment and config — which is the point of the module.

use super::*;
use crate::config::{IdentitySource, OneOrMany, SecretSource};

const URL_FLAG: &str = "https://flag.example/token";
const URL_FILE: &str = "https://file.example/token";

/// Flags that name an endpoint and a client, so that each row varies one key alone.
fn base_args() -> CredentialArgs {
    CredentialArgs::default()
}

fn base_profile() -> ProfileConfig {
    ProfileConfig {
        token_url: Some(URL_FILE.into()),
        client_id: Some("file-client".into()),
        ..ProfileConfig::default()
    }
}

/// An environment with a `HOME` (so that the file cache has a place) and `pairs`.
fn env(pairs: &[(&str, &str)]) -> Environment {
    let home = std::iter::once(("HOME", "/home/u"));
    Environment::from_pairs(
        home.chain(pairs.iter().copied())
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
}

fn loaded(profile: ProfileConfig) -> Loaded {
    let mut file = crate::config::ConfigFile::default();
    file.profiles.insert("default".into(), profile);
    Loaded {
        path: PathBuf::from("/cfg/config.toml"),
        file,
    }
}

fn resolve_with(
    args: &CredentialArgs,
    profile: ProfileConfig,
    env: &Environment,
) -> CliResult<Settings> {
    let loaded = loaded(profile);
    resolve(&Inputs {
        args,
        profile: None,
        config: Some(&loaded),
        no_config: false,
        env,
    })
}

/// One key: how a flag and the file set it, and how the settings show it.
struct Row {
    key: &'static str,
    flag: Option<fn(&mut CredentialArgs)>,
    file: fn(&mut ProfileConfig),
    read: fn(&Settings) -> String,
    flag_value: &'static str,
    file_value: &'static str,
    default: &'static str,
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            key: "client_id",
            flag: Some(|a| a.client_id = Some("flag-client".into())),
            file: |p| p.client_id = Some("file-client".into()),
            read: |s| s.client.id.clone(),
            flag_value: "flag-client",
            file_value: "file-client",
            default: "file-client", // the base profile names one: a client id has no default
        },
        Row {
            key: "api_base",
            flag: Some(|a| a.api_base = Some("https://api.flag.example".into())),
            file: |p| p.api_base = Some("https://api.file.example/v".into()),
            read: |s| s.api_base().map(String::from).unwrap_or_default(),
            flag_value: "https://api.flag.example/",
            file_value: "https://api.file.example/v",
            default: "",
        },
        Row {
            key: "auth_method",
            flag: Some(|a| a.auth_method = Some("client_secret_post".into())),
            file: |p| p.auth_method = Some("none".into()),
            read: |s| s.client.auth_method.to_string(),
            flag_value: "client_secret_post",
            file_value: "none",
            default: "client_secret_basic",
        },
        Row {
            key: "client_certificate",
            flag: Some(|a| a.client_cert = Some("/flag/cert.pem".into())),
            file: |p| p.client_certificate = Some(SecretSource::File("/file/cert.pem".into())),
            read: |s| s.client.certificate.origin(),
            flag_value: "/flag/cert.pem",
            file_value: "/file/cert.pem",
            default: "nowhere",
        },
        Row {
            key: "client_key",
            flag: Some(|a| a.client_key = Some("/flag/key.pem".into())),
            file: |p| p.client_key = Some(SecretSource::Env("CLIENT_KEY_PEM".into())),
            read: |s| s.client.certificate_key.origin(),
            flag_value: "/flag/key.pem",
            file_value: "$CLIENT_KEY_PEM",
            default: "nowhere",
        },
        Row {
            key: "scope",
            flag: Some(|a| a.scope = vec!["a b".into(), "c".into()]),
            file: |p| p.scope = Some(OneOrMany::One("file".into())),
            read: |s| s.ask.scope.join(" "),
            flag_value: "a b c",
            file_value: "file",
            default: "",
        },
        Row {
            key: "audience",
            flag: Some(|a| a.audience = Some("flag-aud".into())),
            file: |p| p.audience = Some("file-aud".into()),
            read: |s| s.ask.audience.clone().unwrap_or_default(),
            flag_value: "flag-aud",
            file_value: "file-aud",
            default: "",
        },
        Row {
            key: "resource",
            flag: Some(|a| a.resource = vec!["urn:flag".into()]),
            file: |p| p.resource = Some(OneOrMany::Many(vec!["urn:file".into()])),
            read: |s| s.ask.resource.join(" "),
            flag_value: "urn:flag",
            file_value: "urn:file",
            default: "",
        },
        Row {
            key: "params",
            flag: Some(|a| a.params = vec!["k=flag".into()]),
            file: |p| {
                p.params.insert("k".into(), "file".into());
            },
            read: |s| format!("{:?}", s.ask.params),
            flag_value: r#"[("k", "flag")]"#,
            file_value: r#"[("k", "file")]"#,
            default: "[]",
        },
        Row {
            key: "cache",
            flag: Some(|a| a.cache = Some("memory".into())),
            file: |p| p.cache = Some("file:/file-cache".into()),
            read: |s| format!("{:?} {}", s.cache.choice, s.cache.explicit),
            flag_value: "Memory true",
            file_value: r#"File("/file-cache") true"#,
            default: r#"File("/home/u/.cache/freshtoken") false"#,
        },
        Row {
            key: "token_rate",
            flag: None,
            file: |p| {
                p.cache = Some("redis://127.0.0.1:1/0".into());
                p.token_rate = Some("300/min".into());
            },
            read: |s| format!("{:?}", s.cache.token_rate),
            flag_value: "",
            file_value: "Some((300, 60s))",
            default: "None",
        },
        Row {
            key: "timeout",
            flag: Some(|a| a.timeout = Some("7s".into())),
            file: |p| p.timeout = Some("9s".into()),
            read: |s| format!("{:?}", s.http.timeout),
            flag_value: "7s",
            file_value: "9s",
            default: "30s",
        },
        Row {
            key: "retry_for",
            flag: Some(|a| a.retry_for = Some("5s".into())),
            file: |p| p.retry_for = Some("6s".into()),
            read: |s| format!("{:?}", s.http.retry.deadline),
            flag_value: "5s",
            file_value: "6s",
            default: "60s",
        },
        Row {
            key: "ca_file",
            flag: Some(|a| a.ca_file = Some("/flag.pem".into())),
            file: |p| p.ca_file = Some("/file.pem".into()),
            read: |s| format!("{:?}", s.http.ca_file),
            flag_value: r#"Some("/flag.pem")"#,
            file_value: r#"Some("/file.pem")"#,
            default: "None",
        },
        Row {
            key: "key_id",
            flag: Some(|a| a.key_id = Some("-kid-flag".into())),
            file: |p| p.key_id = Some("kid-file".into()),
            read: |s| s.client.key_id.clone().unwrap_or_default(),
            flag_value: "-kid-flag",
            file_value: "kid-file",
            default: "",
        },
        Row {
            key: "signing_alg",
            flag: Some(|a| a.signing_alg = Some("ES256".into())),
            file: |p| p.signing_alg = Some("RS256".into()),
            read: |s| format!("{:?}", s.client.signing_alg),
            flag_value: "Some(ES256)",
            file_value: "Some(RS256)",
            default: "None",
        },
        Row {
            key: "assertion_audience",
            flag: Some(|a| a.assertion_audience = Some("aud-flag".into())),
            file: |p| p.assertion_audience = Some("aud-file".into()),
            read: |s| s.client.assertion_audience.clone().unwrap_or_default(),
            flag_value: "aud-flag",
            file_value: "aud-file",
            default: "",
        },
        Row {
            key: "assertion_lifetime",
            flag: None,
            file: |p| p.assertion_lifetime = Some("45s".into()),
            read: |s| format!("{:?}", s.client.assertion_lifetime),
            flag_value: "",
            file_value: "Some(45s)",
            default: "None",
        },
        Row {
            key: "default_lifetime",
            flag: None,
            file: |p| p.default_lifetime = Some("10m".into()),
            read: |s| format!("{:?}", s.http.default_lifetime),
            flag_value: "",
            file_value: "600s",
            default: "300s",
        },
        Row {
            key: "refresh_at",
            flag: None,
            file: |p| p.refresh_at = Some(0.5),
            read: |s| s.policy.stale_fraction.to_string(),
            flag_value: "",
            file_value: "0.5",
            default: "0.75",
        },
        Row {
            key: "refresh_jitter",
            flag: None,
            file: |p| p.refresh_jitter = Some(0.01),
            read: |s| s.policy.jitter_fraction.to_string(),
            flag_value: "",
            file_value: "0.01",
            default: "0.05",
        },
        Row {
            key: "refresh_margin_fraction",
            flag: None,
            file: |p| p.refresh_margin_fraction = Some(0.2),
            read: |s| s.policy.margin_fraction.to_string(),
            flag_value: "",
            file_value: "0.2",
            default: "0.1",
        },
        Row {
            key: "refresh_margin_max",
            flag: None,
            file: |p| p.refresh_margin_max = Some("1m".into()),
            read: |s| format!("{:?}", s.policy.margin_cap),
            flag_value: "",
            file_value: "60s",
            default: "30s",
        },
        Row {
            key: "client_assertion",
            flag: Some(|a| a.client_assertion_file = Some("/run/token".into())),
            file: |p| {
                p.client_assertion = Some(IdentitySource::GithubActions {
                    audience: Some("api://AzureADTokenExchange".into()),
                })
            },
            read: |s| {
                format!(
                    "{} {}",
                    s.client.auth_method,
                    s.identity.describe().unwrap_or_default()
                )
            },
            flag_value: "client_assertion client_assertion file /run/token",
            file_value: "client_assertion client_assertion github_actions (audience api://AzureADTokenExchange)",
            default: "client_secret_basic ",
        },
        Row {
            key: "subject_token",
            flag: Some(|a| a.subject_token_from = Some("gitlab:CI_ID_TOKEN".into())),
            file: |p| p.subject_token = Some(IdentitySource::File("/var/run/sa".into())),
            read: |s| {
                format!(
                    "{} {}",
                    s.client.auth_method,
                    s.identity.describe().unwrap_or_default()
                )
            },
            flag_value: "none subject_token gitlab $CI_ID_TOKEN",
            file_value: "none subject_token file /var/run/sa",
            default: "client_secret_basic ",
        },
        Row {
            key: "requested_token_type",
            flag: None,
            file: |p| {
                p.subject_token = Some(IdentitySource::Env("T".into()));
                p.requested_token_type = Some("urn:x:access_token".into());
                p.subject_token_type = Some("urn:x:id_token".into());
            },
            read: |s| {
                s.identity
                    .exchange
                    .as_ref()
                    .map(|x| format!("{:?} {:?}", x.subject_token_type, x.requested_token_type))
                    .unwrap_or_default()
            },
            flag_value: "",
            file_value: "Some(\"urn:x:id_token\") Some(\"urn:x:access_token\")",
            default: "",
        },
        Row {
            key: "dpop",
            flag: None,
            file: |p| p.dpop = Some(true),
            read: |s| format!("{:?}", s.dpop),
            flag_value: "",
            file_value: "Generated { state_dir: Some(\"/home/u/.local/state/freshtoken\"), alg: Es256 }",
            default: "Off",
        },
        Row {
            key: "dpop_key",
            flag: None,
            file: |p| p.dpop_key = Some(SecretSource::File("/keys/dpop.pem".into())),
            read: |s| format!("{:?}", s.dpop),
            flag_value: "",
            file_value: "Key(File(\"/keys/dpop.pem\"), None)",
            default: "Off",
        },
        Row {
            key: "dpop_alg",
            flag: None,
            file: |p| {
                p.dpop = Some(true);
                p.dpop_alg = Some("EdDSA".into());
            },
            read: |s| format!("{:?}", s.dpop),
            flag_value: "",
            file_value: "Generated { state_dir: Some(\"/home/u/.local/state/freshtoken\"), alg: EdDsa }",
            default: "Off",
        },
    ]
}

#[test]
fn a_dpop_key_with_dpop_off_is_refused() {
    let profile = ProfileConfig {
        dpop: Some(false),
        dpop_key: Some(SecretSource::File("/k.pem".into())),
        ..base_profile()
    };
    let e = resolve_with(&base_args(), profile, &env(&[]))
        .map(|_| ())
        .expect_err("refused")
        .to_string();
    assert!(e.contains("dpop_key") && e.contains("dpop = false"), "{e}");
    for (alg, dpop, needle) in [
        ("HS256", Some(true), "not offered"),
        ("RS256", Some(true), "makes only ES256 and EdDSA keys"),
        (
            "PS256",
            Some(true),
            "name an RSA key of your own in dpop_key",
        ),
        ("EdDSA", None, "applies with dpop = true"),
    ] {
        let profile = ProfileConfig {
            dpop,
            dpop_alg: Some(alg.into()),
            ..base_profile()
        };
        let e = resolve_with(&base_args(), profile, &env(&[]))
            .map(|_| ())
            .expect_err("refused")
            .to_string();
        assert!(e.contains(needle), "{alg}: {e}");
    }
    let off = ProfileConfig {
        dpop: Some(false),
        ..base_profile()
    };
    let s = resolve_with(&base_args(), off, &env(&[])).expect("resolves");
    assert_eq!(s.dpop, dpop::Dpop::Off);
}

#[test]
fn identity_sources_are_refused_where_they_cannot_work() {
    let env = env(&[]);
    let refused = |args: CredentialArgs, profile: ProfileConfig| {
        resolve_with(&args, profile, &env)
            .map(|_| ())
            .expect_err("refused")
            .to_string()
    };
    let mut named = base_profile();
    named.auth_method = Some("client_assertion".into());
    assert!(refused(base_args(), named).contains("needs an identity token"));
    let mut args = base_args();
    args.client_assertion_from = Some("github".into());
    args.auth_method = Some("client_secret_post".into());
    assert!(refused(args, base_profile()).contains("the auth method is client_secret_post"));
    let mut args = base_args();
    args.subject_token_from = Some("vault:x".into());
    assert!(refused(args, base_profile()).contains("github[:AUDIENCE]"));
    let mut grant = base_profile();
    grant.grant = Some("token_exchange".into());
    assert!(refused(base_args(), grant.clone()).contains("needs a subject token"));
    grant.grant = Some("password".into());
    grant.subject_token = Some(IdentitySource::Env("T".into()));
    assert!(refused(base_args(), grant).contains("unknown grant"));
    let mut stray = base_profile();
    stray.requested_token_type = Some("urn:x".into());
    assert!(refused(base_args(), stray).contains("token_exchange"));
    // A token exchange with a secret at hand authenticates with it.
    let with_secret = resolve_with(
        &base_args(),
        ProfileConfig {
            subject_token: Some(IdentitySource::Env("T".into())),
            client_secret: Some(SecretSource::Env("S".into())),
            ..base_profile()
        },
        &env,
    )
    .expect("resolves");
    assert_eq!(
        with_secret.client.auth_method,
        AuthMethod::ClientSecretBasic
    );
}

#[test]
fn every_key_takes_the_flag_over_the_file_over_the_default() -> CliResult {
    let env = env(&[("HOME", "/home/u")]);
    for row in rows() {
        let read = |args: &CredentialArgs, profile: ProfileConfig| -> CliResult<String> {
            Ok((row.read)(&resolve_with(args, profile, &env)?))
        };
        let key = row.key;
        assert_eq!(
            read(&base_args(), base_profile())?,
            row.default,
            "{key}: default"
        );
        let mut profile = base_profile();
        (row.file)(&mut profile);
        assert_eq!(
            read(&base_args(), profile.clone())?,
            row.file_value,
            "{key}: file"
        );
        if let Some(flag) = row.flag {
            let mut args = base_args();
            flag(&mut args);
            assert_eq!(
                read(&args, profile)?,
                row.flag_value,
                "{key}: flag over file"
            );
            assert_eq!(read(&args, base_profile())?, row.flag_value, "{key}: flag");
        }
    }
    Ok(())
}

#[test]
fn the_endpoint_is_one_unit_from_the_highest_source() -> CliResult {
    let none = env(&[]);
    // A flag's token URL over the file's.
    let mut args = base_args();
    args.token_url = Some(URL_FLAG.into());
    let s = resolve_with(&args, base_profile(), &none)?;
    assert_eq!(
        s.endpoint,
        Endpoint::TokenUrl(Url::parse(URL_FLAG).unwrap())
    );
    // An issuer from the environment beats the file's token URL, which is noted unused.
    let mut args = base_args();
    args.issuer = Some("https://idp.example".into());
    args.from_env.issuer = true;
    let s = resolve_with(&args, base_profile(), &none)?;
    assert_eq!(
        s.endpoint,
        Endpoint::Issuer(Url::parse("https://idp.example").unwrap())
    );
    assert!(
        s.notes.iter().any(|n| n.contains("token_url in profile")),
        "{:?}",
        s.notes
    );
    // The environment's provider is not completed by the file's region.
    let mut args = base_args();
    args.provider = Some("genesys".into());
    args.from_env.provider = true;
    let profile = ProfileConfig {
        region: Some("eu-west-1".into()),
        ..base_profile()
    };
    let e = resolve_with(&args, profile.clone(), &none).unwrap_err();
    assert!(e.message.contains("needs a region"), "{}", e.message);
    assert!(e.message.contains("is not used"), "{}", e.message);
    // ... but a region from the same rank or higher is taken.
    args.region = Some("eu-west-1".into());
    let s = resolve_with(&args, profile, &none)?;
    assert!(matches!(s.endpoint, Endpoint::Genesys(_)));
    assert!(s.api_base().is_some());
    // GENESYSCLOUD_REGION alone implies Genesys Cloud, and its client variables count then.
    let genesys = env(&[
        ("GENESYSCLOUD_REGION", "us-east-1"),
        ("GENESYSCLOUD_OAUTHCLIENT_ID", "gc-client"),
        ("GENESYSCLOUD_OAUTHCLIENT_SECRET", "s"),
    ]);
    let s = resolve_with(&base_args(), ProfileConfig::default(), &genesys)?;
    assert!(matches!(s.endpoint, Endpoint::Genesys(_)));
    assert_eq!(s.client.id, "gc-client");
    assert!(matches!(
        s.client.secret,
        SecretSpec::Env(env::GENESYS_CLIENT_SECRET)
    ));
    // A token URL of the environment beside GENESYSCLOUD_REGION is its login host: the
    // provider (API base, exec's Genesys variables) stays.
    let mut args = base_args();
    args.token_url = Some(URL_FLAG.into());
    args.from_env.token_url = true;
    let s = resolve_with(&args, ProfileConfig::default(), &genesys)?;
    assert_eq!(
        s.endpoint,
        Endpoint::TokenUrl(Url::parse(URL_FLAG).unwrap())
    );
    assert_eq!(s.provider.as_ref().map(|r| r.name), Some("us-east-1"));
    // ... but not beside another endpoint: there they would be another client's.
    let s = resolve_with(&base_args(), base_profile(), &genesys)?;
    assert!(matches!(s.endpoint, Endpoint::TokenUrl(_)));
    assert_eq!(s.client.id, "file-client");
    assert!(matches!(s.client.secret, SecretSpec::Missing));
    // A token URL beside the provider is its login host: no region needed, and Genesys
    // Cloud's client variables count, as they do for any endpoint named in this run.
    let mut args = base_args();
    args.provider = Some("genesys".into());
    args.token_url = Some(URL_FLAG.into());
    let s = resolve_with(&args, ProfileConfig::default(), &genesys)?;
    assert_eq!(
        s.endpoint,
        Endpoint::TokenUrl(Url::parse(URL_FLAG).unwrap())
    );
    assert_eq!(s.client.id, "gc-client");
    assert!(s.api_base().is_none());
    let mut args = base_args();
    args.token_url = Some(URL_FLAG.into());
    args.from_env.token_url = true;
    assert_eq!(
        resolve_with(&args, ProfileConfig::default(), &genesys)?
            .client
            .id,
        "gc-client"
    );
    // The provider alone still needs its region, and the error says where to give one.
    let mut args = base_args();
    args.provider = Some("genesys".into());
    let e = resolve_with(&args, base_profile(), &none).unwrap_err();
    assert!(
        e.message.contains("--token-url for its login host"),
        "{}",
        e.message
    );
    // No endpoint anywhere is a usage error that names every way to give one.
    let client_only = ProfileConfig {
        client_id: Some("c".into()),
        ..ProfileConfig::default()
    };
    let e = resolve_with(&base_args(), client_only, &none).unwrap_err();
    assert!(e.message.starts_with("no token endpoint"), "{}", e.message);
    Ok(())
}

#[test]
fn secrets_are_named_in_order_and_never_read() -> CliResult {
    // A source that would fail if it were read or run: resolving only names it.
    let profile = ProfileConfig {
        client_secret: Some(SecretSource::Command(vec![
            "/nonexistent/secret-tool".into(),
        ])),
        private_key: Some(SecretSource::File("/nonexistent/key.pem".into())),
        ..base_profile()
    };
    let none = env(&[]);
    let s = resolve_with(&base_args(), profile.clone(), &none)?;
    assert!(matches!(
        s.client.secret,
        SecretSpec::Config(SecretSource::Command(_))
    ));
    assert!(matches!(
        s.client.key,
        SecretSpec::Config(SecretSource::File(_))
    ));
    let with_env = env(&[
        ("FRESHTOKEN_CLIENT_SECRET", "x"),
        ("FRESHTOKEN_PRIVATE_KEY", "pem"),
    ]);
    let s = resolve_with(&base_args(), profile.clone(), &with_env)?;
    assert!(matches!(
        s.client.secret,
        SecretSpec::Env(env::CLIENT_SECRET)
    ));
    assert!(matches!(s.client.key, SecretSpec::Env(env::PRIVATE_KEY)));
    let mut args = base_args();
    args.client_secret_file = Some("/flag-secret".into());
    args.private_key = Some("/flag-key.pem".into());
    let s = resolve_with(&args, profile.clone(), &with_env)?;
    assert!(matches!(&s.client.secret, SecretSpec::File(p) if p.as_os_str() == "/flag-secret"));
    assert!(matches!(&s.client.key, SecretSpec::File(p) if p.as_os_str() == "/flag-key.pem"));
    args.client_secret_stdin = true;
    let s = resolve_with(&args, profile, &with_env)?;
    assert!(matches!(s.client.secret, SecretSpec::Stdin));
    Ok(())
}

#[test]
fn the_environment_places_the_cache_moves_the_clock_and_sets_the_lease() -> CliResult {
    let e = env(&[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")]);
    let s = resolve_with(&base_args(), base_profile(), &e)?;
    assert_eq!(s.cache.choice, CacheChoice::File("/xdg/freshtoken".into()));
    assert_eq!(s.clock, ClockChoice::System);
    // A relative XDG_CACHE_HOME is ignored, as the XDG spec says.
    let e = env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/home/u")]);
    let s = resolve_with(&base_args(), base_profile(), &e)?;
    assert_eq!(
        s.cache.choice,
        CacheChoice::File("/home/u/.cache/freshtoken".into())
    );
    let err = resolve_with(&base_args(), base_profile(), &Environment::default()).unwrap_err();
    assert!(
        err.message.contains("cannot find a cache directory"),
        "{}",
        err.message
    );
    let e = env(&[("FRESHTOKEN_CLOCK_SKEW", "16s"), ("HOME", "/h")]);
    let s = resolve_with(&base_args(), base_profile(), &e)?;
    assert_eq!(s.clock, ClockChoice::Ahead(Duration::from_secs(16)));
    let e = env(&[
        ("FRESHTOKEN_CLOCK_SKEW_FILE", "/skew"),
        ("FRESHTOKEN_CLOCK_SKEW", "bad"),
    ]);
    let s = resolve_with(&base_args(), base_profile(), &e)?;
    assert_eq!(s.clock, ClockChoice::SkewFile("/skew".into()));
    let e = env(&[("FRESHTOKEN_CLOCK_SKEW", "soon"), ("HOME", "/h")]);
    let err = resolve_with(&base_args(), base_profile(), &e).unwrap_err();
    assert!(
        err.message.starts_with("FRESHTOKEN_CLOCK_SKEW"),
        "{}",
        err.message
    );
    // The Redis lease counts for a Redis cache only, with a floor of 100 ms.
    let mut args = base_args();
    args.cache = Some("redis://127.0.0.1:1/0".into());
    let e = env(&[("FRESHTOKEN_REDIS_LEASE", "1ms"), ("HOME", "/h")]);
    let s = resolve_with(&args, base_profile(), &e)?;
    assert_eq!(s.cache.redis_lease, Duration::from_millis(100));
    let e = env(&[("FRESHTOKEN_REDIS_LEASE", "never"), ("HOME", "/h")]);
    assert!(resolve_with(&base_args(), base_profile(), &e).is_ok());
    Ok(())
}

#[test]
fn the_agent_s_profiles_see_neither_flags_nor_credential_variables() -> CliResult {
    let e = env(&[
        ("GENESYSCLOUD_REGION", "us-east-1"),
        ("FRESHTOKEN_CLIENT_SECRET", "x"),
        ("HOME", "/h"),
    ]);
    let s = resolve_profile("p", &base_profile(), Path::new("/cfg.toml"), &e)?;
    assert!(matches!(s.endpoint, Endpoint::TokenUrl(_)));
    assert!(matches!(s.client.secret, SecretSpec::Missing));
    // Kept in process unless the profile names a cache.
    assert_eq!(s.cache.choice, CacheChoice::Memory);
    assert!(!s.cache.explicit);
    Ok(())
}

#[test]
fn a_profile_is_found_or_refused_with_the_ones_there() -> CliResult {
    let args = base_args();
    let e = env(&[("HOME", "/h")]);
    let loaded = loaded(base_profile());
    let inputs = |profile, config, no_config| Inputs {
        args: &args,
        profile,
        config,
        no_config,
        env: &e,
    };
    assert_eq!(
        resolve(&inputs(Some("default"), Some(&loaded), false))?.profile,
        "default"
    );
    let err = resolve(&inputs(Some("prod"), Some(&loaded), false)).unwrap_err();
    assert!(
        err.message.contains("profiles there: default"),
        "{}",
        err.message
    );
    let err = resolve(&inputs(Some("prod"), None, true)).unwrap_err();
    assert!(err.message.contains("--no-config"), "{}", err.message);
    let err = resolve(&inputs(Some("prod"), None, false)).unwrap_err();
    assert!(
        err.message.contains("no config file was found"),
        "{}",
        err.message
    );
    Ok(())
}

#[test]
fn cache_choices() -> Result<(), CliError> {
    let dir = Some(PathBuf::from("/c"));
    assert_eq!(
        CacheChoice::parse("memory", dir.clone())?,
        CacheChoice::Memory
    );
    assert_eq!(
        CacheChoice::parse("file", dir.clone())?,
        CacheChoice::File("/c".into())
    );
    assert_eq!(
        CacheChoice::parse("file:/tmp/x", None)?,
        CacheChoice::File("/tmp/x".into())
    );
    assert!(
        CacheChoice::parse("redis-ish", dir.clone())
            .unwrap_err()
            .message
            .contains("unknown cache")
    );
    assert!(CacheChoice::parse("file:", dir).is_err());
    Ok(())
}

#[test]
fn a_sentinel_url_is_a_redis_cache_with_the_file_cache_in_front() -> Result<(), CliError> {
    for url in [
        "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/primary/0",
        "rediss+sentinel://s1:26379/primary",
    ] {
        assert_eq!(
            CacheChoice::parse(url, Some(PathBuf::from("/c")))?,
            CacheChoice::Redis {
                url: url.to_owned(),
                file: Some("/c".into()),
            }
        );
    }
    Ok(())
}

#[test]
fn a_token_rate_needs_a_redis_cache_and_a_rate() {
    let env = env(&[]);
    let mut profile = base_profile();
    profile.token_rate = Some("300/min".into());
    let e = resolve_with(&base_args(), profile.clone(), &env).unwrap_err();
    assert_eq!(e.code, crate::exit::code::USAGE);
    assert!(
        e.message.contains("token_rate") && e.message.contains("Redis"),
        "{}",
        e.message
    );
    profile.cache = Some("redis://127.0.0.1:1/0".into());
    profile.token_rate = Some("lots".into());
    let e = resolve_with(&base_args(), profile, &env).unwrap_err();
    assert!(
        e.message.contains("token_rate") && e.message.contains("not a rate"),
        "{}",
        e.message
    );
}
