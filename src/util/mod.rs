//! Small leaf utilities with no knowledge of the rest of the crate: token counting, time
//! formats, log parsing, client input quoted in messages, name suggestions and
//! background-thread priority.

pub mod compact;
pub mod logs;
pub mod quote;
pub mod redact;
pub mod schema;
pub mod suggest;
pub mod summary;
pub mod thread;
pub mod timefmt;
pub mod tokens;
