//! Real-time delivery: the per-instance connection hub, the Redis event bus
//! that makes several instances behave as one, presence, typing, the event
//! envelope and the `/ws` endpoint.

pub mod bus;
pub mod direct;
pub mod docs;
pub mod event;
pub mod hub;
pub mod inbound;
pub mod instances;
pub mod presence;
pub mod recipients;
pub mod resume;
pub mod store;
pub mod typing;
pub mod ws;

pub use bus::EventBus;
pub use event::Event;
pub use hub::{CloseReason, Hub};
