//! The client's credentials as their own types, so that a secret cannot be passed where an
//! id goes (or printed by accident): a [`ClientId`] is shown, a [`ClientSecret`] and a
//! [`PrivateKey`] are redacted by `Debug` and have no `Display`.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// The OAuth client id: not a secret, so `Debug` and `Display` show it.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    /// A client id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as sent to the server.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ClientId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<String> for ClientId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for ClientId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

/// Defines a secret newtype over [`SecretString`]: redacted `Debug`, no `Display`, the
/// value only through [`ExposeSecret`].
macro_rules! secret_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(SecretString);

        impl $name {
            /// Wraps `secret`.
            pub fn new(secret: SecretString) -> Self {
                Self(secret)
            }

            /// The value as a [`SecretString`], for APIs that take one.
            pub fn as_secret(&self) -> &SecretString {
                &self.0
            }
        }

        impl ExposeSecret<str> for $name {
            fn expose_secret(&self) -> &str {
                self.0.expose_secret()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }

        impl From<SecretString> for $name {
            fn from(secret: SecretString) -> Self {
                Self(secret)
            }
        }

        impl From<String> for $name {
            fn from(secret: String) -> Self {
                Self(SecretString::from(secret))
            }
        }
    };
}

secret_newtype!(
    /// The client secret, for `client_secret_basic`, `client_secret_post` and
    /// `client_secret_jwt`.
    ClientSecret
);

secret_newtype!(
    /// The client's PEM private key, for `private_key_jwt`.
    PrivateKey
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_id_and_hides_the_secrets() {
        let id = ClientId::from("client-1");
        let secret = ClientSecret::from("s3cr3t-value".to_owned());
        let key = PrivateKey::from("-----BEGIN PRIVATE KEY-----abc".to_owned());
        assert_eq!(format!("{id:?} {id}"), "\"client-1\" client-1");
        assert_eq!(format!("{secret:?}"), "ClientSecret([REDACTED])");
        assert_eq!(format!("{key:?}"), "PrivateKey([REDACTED])");
        assert_eq!(secret.expose_secret(), "s3cr3t-value");
    }
}
