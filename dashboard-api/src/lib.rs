//! The DDA Open API and dashboard back end.
//!
//! Not built yet: the REST API (`dda serve`) arrives with the Open API issue. It holds no
//! code until then.
