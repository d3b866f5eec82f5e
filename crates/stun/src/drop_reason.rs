//! Why the Binding responder (or a partner) gave a datagram no answer.

/// Why a datagram got no answer. Every drop is counted by the caller under this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than a STUN header.
    TooShort,
    /// The first two bits are not zero: not STUN at all.
    NotStun,
    /// The header's length field disagrees with the datagram's size or is not a multiple of 4.
    BadLength,
    /// The attributes do not parse (a TLV runs past the end).
    Malformed,
    /// A FINGERPRINT is present and wrong: not a STUN message for us (RFC 8489 §7.3).
    FingerprintMismatch,
    /// A response: servers answer requests only.
    NotRequest,
    /// An indication (e.g. a Binding keepalive, RFC 8489 §6.3.2): valid, but no answer is due.
    Indication,
    /// A request for a method this server does not offer (e.g. Allocate with TURN off).
    UnsupportedMethod,
    /// Larger than the receive buffer: cut by the kernel.
    Oversized,
    /// The output buffer could not hold the response (a bug or a tiny buffer).
    NoRoom,
    /// A partner message not from a partner's primary address, or whose HMAC fails.
    PartnerForged,
    /// A partner message whose timestamp is too old or too far ahead.
    PartnerStale,
    /// A partner message whose nonce was already seen.
    PartnerReplay,
    /// Over the partner rate limit (forwards sent, or forwards answered).
    PartnerRateLimited,
}

impl DropReason {
    /// Every reason, for metrics that list them all.
    pub const ALL: [DropReason; 14] = [
        DropReason::TooShort,
        DropReason::NotStun,
        DropReason::BadLength,
        DropReason::Malformed,
        DropReason::FingerprintMismatch,
        DropReason::NotRequest,
        DropReason::Indication,
        DropReason::UnsupportedMethod,
        DropReason::Oversized,
        DropReason::NoRoom,
        DropReason::PartnerForged,
        DropReason::PartnerStale,
        DropReason::PartnerReplay,
        DropReason::PartnerRateLimited,
    ];

    /// Whether the bytes were no STUN message at all, so that on a stream (RFC 8489 §6.2.2,
    /// where messages follow each other with no other boundary) nothing after them can be
    /// trusted to start a message: the connection is closed. Other drops leave the stream in
    /// step, and it goes on.
    pub fn breaks_stream(self) -> bool {
        matches!(
            self,
            DropReason::BadLength | DropReason::Malformed | DropReason::NotStun
        )
    }

    /// A short stable name (a metrics label value).
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TooShort => "too_short",
            DropReason::NotStun => "not_stun",
            DropReason::BadLength => "bad_length",
            DropReason::Malformed => "malformed",
            DropReason::FingerprintMismatch => "fingerprint_mismatch",
            DropReason::NotRequest => "not_request",
            DropReason::Indication => "indication",
            DropReason::UnsupportedMethod => "unsupported_method",
            DropReason::Oversized => "oversized",
            DropReason::NoRoom => "no_room",
            DropReason::PartnerForged => "partner_forged",
            DropReason::PartnerStale => "partner_stale",
            DropReason::PartnerReplay => "partner_replay",
            DropReason::PartnerRateLimited => "partner_rate_limited",
        }
    }

    /// One line for an operator reading the log.
    pub fn meaning(self) -> &'static str {
        match self {
            DropReason::TooShort => "datagram shorter than a STUN header",
            DropReason::NotStun => "first two bits not zero: not a STUN message",
            DropReason::BadLength => "STUN length field disagrees with the datagram size",
            DropReason::Malformed => "STUN attributes run past the end of the message",
            DropReason::FingerprintMismatch => "FINGERPRINT present but wrong",
            DropReason::NotRequest => "a STUN response sent to the server",
            DropReason::Indication => "a STUN indication (keepalive): no answer is due",
            DropReason::UnsupportedMethod => {
                "a STUN request for a method this server does not offer"
            }
            DropReason::Oversized => "datagram larger than the receive buffer",
            DropReason::NoRoom => "response did not fit the output buffer",
            DropReason::PartnerForged => {
                "partner message not from a partner's primary address, or its HMAC fails \
                 (check stun.partners and stun.partner_secrets on both servers)"
            }
            DropReason::PartnerStale => {
                "partner message timestamp outside stun.partner_max_age (are both clocks on NTP?)"
            }
            DropReason::PartnerReplay => "partner message replayed (nonce already seen)",
            DropReason::PartnerRateLimited => "over stun.partner_rate_limit",
        }
    }
}
