//! The media relay's sans-IO parts. Today: the control protocol Kamailio's and OpenSIPS's
//! rtpengine modules speak ([`ng`]): a request is read into a typed [`ng::Request`] (command,
//! call, tags, SDP, flags), and a reply written in rtpengine's shape. The relay's media core
//! (streams, latching, RTP figures) comes next (issue 14).
//!
//! Reading is total: any datagram gives a request or an error, never a panic, and nothing is
//! allocated beyond fixed bounds ([`ng::bencode::MAX_ITEMS`], [`ng::bencode::MAX_DEPTH`]).

pub mod ng;
