//! What can stop the agent, by kind: the binary maps each kind to its exit code.

/// Why the agent cannot start, or a reload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A configuration the agent cannot run (a sink named twice, a socket folder open to
    /// others, a port taken): fix the config. Exit 2 in the CLI.
    #[error("{0}")]
    Config(String),
    /// A local failure (random bytes, file modes): exit 5 in the CLI.
    #[error("{0}")]
    Internal(String),
    /// The library refused something (a proxy's upstream, a token request), with its kind.
    #[error(transparent)]
    Library(#[from] freshtoken::Error),
    /// The [`Load`](crate::Load) implementation failed; its error is kept as it gave it, so
    /// that the caller can recover its own type (and exit code) by downcasting.
    #[error(transparent)]
    Load(Box<dyn std::error::Error + Send + Sync>),
}

impl AgentError {
    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::Config(message.into())
    }

    /// A local failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }
}
