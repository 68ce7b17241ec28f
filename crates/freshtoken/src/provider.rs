//! Known providers: endpoints that users should not have to look up in SDK source.

use url::Url;

/// Genesys Cloud regions and their domains, as the official SDKs list them.
pub const GENESYS_REGIONS: &[(&str, &str)] = &[
    ("us-east-1", "mypurecloud.com"),
    ("us-east-2", "use2.us-gov-pure.cloud"),
    ("us-west-2", "usw2.pure.cloud"),
    ("ca-central-1", "cac1.pure.cloud"),
    ("sa-east-1", "sae1.pure.cloud"),
    ("mx-central-1", "mxc1.pure.cloud"),
    ("eu-west-1", "mypurecloud.ie"),
    ("eu-west-2", "euw2.pure.cloud"),
    ("eu-central-1", "mypurecloud.de"),
    ("eu-central-2", "euc2.pure.cloud"),
    ("eusc-de-east-1", "edee1.eusc-pure.cloud"),
    ("me-central-1", "mec1.pure.cloud"),
    ("ap-south-1", "aps1.pure.cloud"),
    ("ap-southeast-1", "apse1.pure.cloud"),
    ("ap-southeast-2", "mypurecloud.com.au"),
    ("ap-northeast-1", "mypurecloud.jp"),
    ("ap-northeast-2", "apne2.pure.cloud"),
    ("ap-northeast-3", "apne3.pure.cloud"),
];

/// The endpoints of one Genesys Cloud region.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GenesysRegion {
    /// The region name, e.g. `us-east-1`.
    pub name: &'static str,
    /// Its domain, e.g. `mypurecloud.com`.
    pub domain: &'static str,
}

impl GenesysRegion {
    /// Finds a region by name (`us-east-1` or `us_east_1`, any case) or by domain
    /// (`mypurecloud.com`, also with a `login.`/`api.` prefix or as a URL).
    pub fn find(input: &str) -> Result<Self, String> {
        let wanted = input.trim().to_ascii_lowercase();
        let as_name = wanted.replace('_', "-");
        let as_domain = wanted
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .trim_start_matches("login.")
            .trim_start_matches("api.")
            .to_owned();
        GENESYS_REGIONS
            .iter()
            .find(|(name, domain)| *name == as_name || *domain == as_domain)
            .map(|&(name, domain)| GenesysRegion { name, domain })
            .ok_or_else(|| {
                let known: Vec<_> = GENESYS_REGIONS.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown Genesys Cloud region {input:?}; known regions: {}",
                    known.join(", ")
                )
            })
    }

    /// `https://login.<domain>/oauth/token`.
    pub fn token_url(&self) -> Url {
        // The table holds plain host names, so this always parses.
        Url::parse(&format!("https://login.{}/oauth/token", self.domain))
            .unwrap_or_else(|_| unreachable!())
    }

    /// `https://api.<domain>`.
    pub fn api_base(&self) -> Url {
        // As above: a fixed scheme and a host name from the table always parse.
        Url::parse(&format!("https://api.{}", self.domain)).unwrap_or_else(|_| unreachable!())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_by_name_underscore_and_domain() {
        for (name, domain) in GENESYS_REGIONS {
            for input in [
                name.to_string(),
                name.replace('-', "_"),
                name.to_uppercase(),
                domain.to_string(),
                format!("api.{domain}"),
                format!("https://login.{domain}/"),
            ] {
                let r = GenesysRegion::find(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
                assert_eq!(r.name, *name);
            }
            let r = GenesysRegion::find(name).unwrap();
            assert_eq!(
                r.token_url().as_str(),
                format!("https://login.{domain}/oauth/token")
            );
            assert_eq!(r.api_base().as_str(), format!("https://api.{domain}/"));
        }
        assert_eq!(GENESYS_REGIONS.len(), 18);
    }

    #[test]
    fn unknown_regions_list_the_known_ones() {
        let e = GenesysRegion::find("mars-1").unwrap_err();
        assert!(
            e.contains("\"mars-1\"") && e.contains("us-east-1") && e.contains("ap-northeast-3"),
            "{e}"
        );
    }
}
