//! Rate limiting.

pub mod redis;
