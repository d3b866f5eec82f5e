//! SDP (RFC 8866) as a media relay needs it. A session description is read once into an index
//! of its lines ([`Sdp`]): byte ranges into the buffer it came in, with the fields a relay
//! changes found and checked (`o=`, `c=` at both levels, each `m=` port, RFC 3605 `a=rtcp`, the
//! ICE attributes of RFC 8839). A [`Rewrite`] then writes a new description that puts the
//! relay's address and ports there, removes ICE if asked, and keeps every other byte as it came:
//! attribute order, unknown lines, the line ends the sender used.
//!
//! Reading is total: any bytes give an [`Sdp`] or an [`Error`], never a panic, and what is kept
//! is bounded ([`MAX_LINES`], [`MAX_MEDIA`]). A rewrite's output is at most a fixed number of
//! bytes longer per line than its input.

mod parse;
mod rewrite;

pub use parse::{Connection, Direction, Error, MAX_LINES, MAX_MEDIA, Media, Sdp};
pub use rewrite::{Ice, Rewrite};
