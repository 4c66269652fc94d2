//! One module per subcommand.

pub mod convert;
pub mod schema;
pub mod validate;
