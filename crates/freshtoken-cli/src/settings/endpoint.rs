//! The token endpoint as one unit: which source names it, and the Genesys region.

use freshtoken::provider::GenesysRegion;

use crate::cli::CredentialArgs;
use crate::config::ProfileConfig;
use crate::env;
use crate::exit::{CliError, CliResult};

/// How high a source ranks: a flag over its environment variable over the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Flag,
    Environment,
    File,
}

/// One setting of the endpoint as given by the highest source that gives it.
#[derive(Debug)]
pub(super) struct Part {
    rank: Rank,
    pub(super) value: String,
    /// How the user named it, for messages: `--token-url`, `FRESHTOKEN_TOKEN_URL`, ….
    pub(super) name: String,
}

/// How a part of the endpoint is named as a flag, a variable and a profile key.
const TOKEN_URL_NAMES: [&str; 3] = ["--token-url", env::TOKEN_URL, "token_url"];
const ISSUER_NAMES: [&str; 3] = ["--issuer", env::ISSUER, "issuer"];
const PROVIDER_NAMES: [&str; 3] = ["--provider", env::PROVIDER, "provider"];

impl Part {
    fn new(rank: Rank, value: &str, name: String) -> Self {
        Self {
            rank,
            value: value.to_owned(),
            name,
        }
    }

    /// The part as the flag (or, `from_env`, its variable) gives it, else the file.
    fn given(
        arg: &Option<String>,
        from_env: bool,
        [flag, var, key]: [&str; 3],
        file: &Option<String>,
        in_file: &dyn Fn(&str) -> String,
    ) -> Option<Self> {
        match (arg, file) {
            (Some(v), _) if from_env => Some(Self::new(Rank::Environment, v, var.to_owned())),
            (Some(v), _) => Some(Self::new(Rank::Flag, v, flag.to_owned())),
            (None, Some(v)) => Some(Self::new(Rank::File, v, in_file(key))),
            (None, None) => None,
        }
    }
}

/// The token endpoint, taken whole from the highest source that names one.
///
/// The endpoint is where the client's credentials are sent, so it is one unit: a token URL,
/// an issuer, or a provider with its region, all from one source. A lower source cannot
/// replace or complete a part of it (a config file cannot turn the environment's
/// `FRESHTOKEN_PROVIDER=genesys` into its own token URL, nor pick the region); a higher one
/// may choose the region of a provider named lower, which keeps the endpoint a provider's.
#[derive(Debug)]
pub(super) struct Parts {
    pub(super) token_url: Option<Part>,
    pub(super) issuer: Option<Part>,
    /// The provider's region, when the provider is part of the chosen source's endpoint: it
    /// gives the API base (where `proxy` sends the token), and the token URL when that
    /// source names none.
    pub(super) genesys: Option<GenesysRegion>,
    /// Whether the chosen source names Genesys Cloud as the provider (with a token URL of
    /// its own, a region is not needed).
    pub(super) genesys_named: bool,
    /// The rank of the source the endpoint came from (`None`: no source names one).
    rank: Option<Rank>,
}

impl Parts {
    /// The endpoint's parts from the highest source that names one; what a lower source
    /// names is left out, with a note that says so.
    pub(super) fn resolve(
        args: &CredentialArgs,
        profile: &ProfileConfig,
        genesys_region: Option<String>,
        in_file: &dyn Fn(&str) -> String,
        notes: &mut Vec<String>,
    ) -> CliResult<Self> {
        let given = |arg, from_env, names, file| Part::given(arg, from_env, names, file, in_file);
        let e = args.from_env;
        let (a, p) = (args, profile);
        let token_url = given(&a.token_url, e.token_url, TOKEN_URL_NAMES, &p.token_url);
        let issuer = given(&a.issuer, e.issuer, ISSUER_NAMES, &p.issuer);
        let provider = given(&a.provider, e.provider, PROVIDER_NAMES, &p.provider);
        let provider = provider.or_else(|| {
            // Genesys Cloud's own variable implies its provider when nothing else names an
            // endpoint, so that its users need no flags; a token URL of the environment beside
            // it is the login host of that provider (a gateway, another login domain).
            let token_url_is_login_host = token_url
                .as_ref()
                .is_none_or(|t| t.rank == Rank::Environment);
            genesys_region
                .as_ref()
                .filter(|_| issuer.is_none() && token_url_is_login_host)
                .map(|_| Part::new(Rank::Environment, "genesys", env::GENESYS_REGION.to_owned()))
        });
        let Some(top) = [&token_url, &issuer, &provider]
            .into_iter()
            .flatten()
            .min_by_key(|p| p.rank)
            .map(|p| (p.rank, p.name.clone()))
        else {
            return Ok(Self {
                token_url: None,
                issuer: None,
                genesys: None,
                genesys_named: false,
                rank: None,
            });
        };
        let mut keep = |part: Option<Part>| match part {
            Some(p) if p.rank == top.0 => Some(p),
            Some(p) => {
                notes.push(format!(
                    "{} is not used: {} names the token endpoint",
                    p.name, top.1
                ));
                None
            }
            None => None,
        };
        let (token_url, issuer, provider) = (keep(token_url), keep(issuer), keep(provider));
        let genesys = match &provider {
            // A token URL of the same source is the login host: no region needed for it.
            Some(p) => genesys_region_for(p, args, profile, genesys_region, in_file)
                .map(Some)
                .or_else(|e| match (&token_url, e) {
                    (Some(_), Missing::Region(_)) => Ok(None),
                    (_, Missing::Region(e) | Missing::Other(e)) => Err(e),
                })?,
            None => None,
        };
        Ok(Self {
            token_url,
            issuer,
            genesys,
            genesys_named: provider.is_some(),
            rank: Some(top.0),
        })
    }

    /// Whether the user named the endpoint in this run (a flag or the environment), rather
    /// than a profile of the config file.
    pub(super) fn named_in_this_run(&self) -> bool {
        matches!(self.rank, Some(Rank::Flag | Rank::Environment))
    }
}

/// Why a provider's region was not found.
enum Missing {
    /// None was given where it could be.
    Region(CliError),
    /// Anything else (an unknown provider or region).
    Other(CliError),
}

/// The region of `provider`, from its own source or a higher one.
fn genesys_region_for(
    provider: &Part,
    args: &CredentialArgs,
    profile: &ProfileConfig,
    genesys_region: Option<String>,
    in_file: &dyn Fn(&str) -> String,
) -> Result<GenesysRegion, Missing> {
    let p = &provider.value;
    if !(p.eq_ignore_ascii_case("genesys") || p.eq_ignore_ascii_case("genesyscloud")) {
        return Err(Missing::Other(CliError::usage(format!(
            "unknown provider {p:?}; known: genesys"
        ))));
    }
    let (region_rank, region_name) = if args.from_env.region {
        (Rank::Environment, env::REGION)
    } else {
        (Rank::Flag, "--region")
    };
    let regions = [
        (args.region.clone(), region_rank, region_name.to_owned()),
        (
            genesys_region,
            Rank::Environment,
            env::GENESYS_REGION.to_owned(),
        ),
        (profile.region.clone(), Rank::File, in_file("region")),
    ];
    let mut given = regions
        .iter()
        .filter_map(|(r, rank, name)| Some((r.as_ref()?, *rank, name)));
    if let Some((region, _, _)) = given.clone().find(|(_, rank, _)| *rank <= provider.rank) {
        return GenesysRegion::find(region).map_err(|e| Missing::Other(CliError::usage(e)));
    }
    let allowed: Vec<String> = [
        ("--region".to_owned(), Rank::Flag),
        (env::REGION.to_owned(), Rank::Environment),
        (env::GENESYS_REGION.to_owned(), Rank::Environment),
        (in_file("region"), Rank::File),
    ]
    .into_iter()
    .filter(|(_, rank)| *rank <= provider.rank)
    .map(|(name, _)| name)
    .collect();
    let allowed = match allowed.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    // A region given lower (say, in the config file) is named, so that nobody wonders why.
    let ignored = given
        .next()
        .map(|(_, _, name)| format!("; {name} is not used: the endpoint is one unit"))
        .unwrap_or_default();
    Err(Missing::Region(CliError::usage(format!(
        "the genesys provider ({}) needs a region (e.g. us-east-1) from {allowed}{ignored}, or a --token-url for its login host",
        provider.name
    ))))
}
