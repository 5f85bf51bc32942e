//! Transports: how a source's raw messages reach carillon (a websocket, Server-Sent
//! Events, OpenStreetMap's replication files, the local ingest endpoint, a replay file,
//! the built-in demo). A transport hands each message to its `Delivery`, which reads it
//! in the source's format; reconnection lives once, in `reconnect`.

pub mod demo;
pub mod endpoint;
pub mod http;
pub mod osm;
pub mod reconnect;
pub mod replay;
pub mod stamped;
pub mod websocket;
