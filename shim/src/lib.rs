//! boundary-runc library (being written).
