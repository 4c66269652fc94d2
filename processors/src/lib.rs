//! The DDA processor catalogue.
//!
//! Not built yet: one folder per `processorType` (filter, average, store, ...) arrives with
//! the runtime issue. It holds no code until then.
