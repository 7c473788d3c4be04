//! Unit tests that need a whole Engine (every capability registered), kept in the facade so that each capability
//! crate compiles its own tests without the others.

mod embed;
mod outcome;
mod recall;
mod stream;
