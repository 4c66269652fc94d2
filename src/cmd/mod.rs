//! One module per subcommand.

pub mod bench;
pub mod bench_mqtt;
pub mod bench_window;
pub mod convert;
pub mod processors;
pub mod run;
pub mod schema;
pub mod serve;
pub mod validate;
