//! The agent driven in process.
