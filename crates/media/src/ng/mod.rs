//! rtpengine's "ng" control protocol over UDP: each datagram is a cookie, one space and a
//! bencoded dictionary; the reply repeats the cookie (so a client matches it to its request
//! and a retransmitted request can be answered again). The dictionary's keys arrive in any
//! order (Kamailio sends them unsorted, against bencode's rule).

pub mod bencode;
mod request;

pub use request::{Command, Error, Flag, Ice, Replace, Request, reply, reply_error, request};
