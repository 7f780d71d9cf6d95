//! Wire formats that are not one provider's: Server-Sent Events, AWS's binary event stream,
//! token usage as the providers report it, and the Messages door (a caller speaking Anthropic's
//! Messages API to the gateway).

pub mod chat;
pub mod embeddings;
pub mod eventstream;
pub mod facts;
pub mod messages_in;
pub mod responses_in;
pub mod sse;
pub mod usage;
