//! The DDA runtime (Edge and Distributed Analytics Engines).
//!
//! Not built yet: this crate will hold the data bus, the device registry, the execution of
//! analytics manifests as processor graphs, instance lifecycle, and the connectors
//! (issue "The Edge Analytics Engine runtime"). It holds no code until then.
