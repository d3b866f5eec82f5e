//! Why bytes are not a SIP message.

use std::fmt;

/// Why a message (or a header value) was refused. Each maps to the 400 or 505 a server would
/// answer, or to silently dropping what is not even a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// More than [`crate::MAX_MESSAGE`] bytes.
    TooLong,
    /// The start line is neither a Request-Line nor a Status-Line.
    StartLine,
    /// A version other than SIP/2.0 (answered 505).
    Version,
    /// A header line without a name and colon, or a name that is not a token.
    HeaderLine,
    /// More than [`crate::MAX_HEADERS`] header fields.
    TooManyHeaders,
    /// No empty line ends the headers.
    NoEndOfHeaders,
    /// A header every message needs (Via, From, To, Call-ID, CSeq) is missing, or one that may
    /// appear once appears twice.
    MissingOrRepeated(crate::HeaderName),
    /// A header value does not follow its grammar.
    BadValue(crate::HeaderName),
    /// The Request-URI (or a URI in a header) does not parse.
    Uri,
    /// The CSeq method is not the request's.
    CSeqMismatch,
    /// Content-Length says more than arrived.
    BodyTooShort,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooLong => write!(f, "message longer than {} bytes", crate::MAX_MESSAGE),
            ParseError::StartLine => f.write_str("not a Request-Line or Status-Line"),
            ParseError::Version => f.write_str("not SIP/2.0"),
            ParseError::HeaderLine => f.write_str("malformed header line"),
            ParseError::TooManyHeaders => {
                write!(f, "more than {} header fields", crate::MAX_HEADERS)
            }
            ParseError::NoEndOfHeaders => f.write_str("no empty line after the headers"),
            ParseError::MissingOrRepeated(h) => write!(f, "{h} missing or repeated"),
            ParseError::BadValue(h) => write!(f, "malformed {h}"),
            ParseError::Uri => f.write_str("malformed URI"),
            ParseError::CSeqMismatch => f.write_str("CSeq method differs from the request's"),
            ParseError::BodyTooShort => f.write_str("body shorter than Content-Length"),
        }
    }
}

impl std::error::Error for ParseError {}
