//! The media relay's sans-IO parts. Today: the control protocol Kamailio's and OpenSIPS's
//! rtpengine modules speak ([`ng`]): a request is read into a typed [`ng::Request`] (command,
//! call, tags, SDP, flags), and a reply written in rtpengine's shape; RTP and RTCP headers as
//! the relay reads them ([`rtp`]); and a stream's quality from them ([`quality`]: loss, jitter,
//! round-trip time); symmetric latching with strict source ([`latch`]: which packets a relay
//! port forwards, and where media for an endpoint goes); and the calls and streams that put
//! them together ([`relay::Relay`]: offer, answer, delete, a packet in and where it goes,
//! timers), served over ng by [`control`] (on one relay, or on several, one per data-plane
//! worker, each owning the calls [`control::shard`] gives it). Farside's media shell drives it
//! (`[rtp]`), for Kamailio's rtpengine module and for Farside's own SIP calls.
//!
//! Reading is total: any datagram gives a request or an error, never a panic, and nothing is
//! allocated beyond fixed bounds ([`ng::bencode::MAX_ITEMS`], [`ng::bencode::MAX_DEPTH`]).

pub mod control;
pub mod latch;
pub mod ng;
pub mod quality;
pub mod relay;
pub mod rtp;
