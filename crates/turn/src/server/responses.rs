//! Success and error responses: integrity once authenticated, FINGERPRINT always.

use farside_time::Timestamp;

use farside_stun::attributes::{
    AlternateServer, ErrorCode, Nonce, PasswordAlgorithms, Realm, Software,
};
use farside_stun::{Class, Message, MessageBuilder, attr_type};

use super::auth::ALGORITHMS;
use super::{Auth, Step, TurnServer};
use crate::allocation::FiveTuple;
use crate::outcome::{Dropped, Handled, Refusal, Transmit};

impl TurnServer {
    /// 401 or 438 with REALM, a fresh NONCE and PASSWORD-ALGORITHMS.
    pub(super) fn challenge(
        &self,
        now: Timestamp,
        msg: &Message<'_>,
        five: FiveTuple,
        refusal: Refusal,
        out: &mut [u8],
    ) -> Handled {
        let nonce = self.nonces.make(now.unix_secs());
        let nonce = std::str::from_utf8(&nonce).unwrap_or_default();
        self.refusal(msg, five, refusal, None, out, |b| {
            b.add(&Realm(&self.config.realm)).ok()?;
            b.add(&Nonce(nonce)).ok()?;
            b.add(&PasswordAlgorithms::new(&ALGORITHMS)).ok()
        })
    }

    /// An error response; with integrity once the request was authenticated.
    pub(super) fn error(
        &self,
        msg: &Message<'_>,
        five: FiveTuple,
        refusal: Refusal,
        auth: Option<&Auth>,
        unknown: &[u16],
        out: &mut [u8],
    ) -> Handled {
        self.refusal(msg, five, refusal, auth, out, |b| {
            if !unknown.is_empty() {
                let mut value = [0u8; 16];
                for (c, t) in value.chunks_exact_mut(2).zip(unknown) {
                    c.copy_from_slice(&t.to_be_bytes());
                }
                b.add_raw(attr_type::UNKNOWN_ATTRIBUTES, &value[..unknown.len() * 2])
                    .ok()?;
            }
            Some(())
        })
    }

    /// An error response to an authenticated request (with integrity, no UNKNOWN-ATTRIBUTES).
    pub(super) fn refused(
        &self,
        msg: &Message<'_>,
        five: FiveTuple,
        auth: &Auth,
        refusal: Refusal,
        out: &mut [u8],
    ) -> Handled {
        self.error(msg, five, refusal, Some(auth), &[], out)
    }

    /// 300 Try Alternate naming `alternate` (ALTERNATE-SERVER), with integrity.
    pub(super) fn try_alternate(
        &self,
        msg: &Message<'_>,
        five: FiveTuple,
        auth: &Auth,
        alternate: std::net::SocketAddr,
        out: &mut [u8],
    ) -> Handled {
        self.refusal(msg, five, Refusal::TryAlternate, Some(auth), out, |b| {
            b.add(&AlternateServer(alternate)).ok()
        })
    }

    /// The error response `refusal` to `msg`: ERROR-CODE, what `more` adds, then SOFTWARE,
    /// integrity for `auth` and FINGERPRINT; dropped if it does not fit `out`.
    fn refusal(
        &self,
        msg: &Message<'_>,
        five: FiveTuple,
        refusal: Refusal,
        auth: Option<&Auth>,
        out: &mut [u8],
        more: impl FnOnce(&mut MessageBuilder<'_>) -> Option<()>,
    ) -> Handled {
        let len = (|| {
            let mut b = MessageBuilder::response_to(out, msg, Class::ErrorResponse).ok()?;
            b.add(&ErrorCode {
                code: refusal.code(),
                reason: refusal.reason(),
            })
            .ok()?;
            more(&mut b)?;
            self.finish(b, auth).ok()
        })();
        match len {
            Some(len) => Handled::Refused(
                Transmit {
                    len,
                    from: five.server,
                    to: five.client,
                },
                refusal,
            ),
            None => Handled::Dropped(Dropped::NoRoom),
        }
    }

    pub(super) fn success(
        &self,
        msg: &Message<'_>,
        five: FiveTuple,
        auth: &Auth,
        out: &mut [u8],
        body: impl FnOnce(&mut MessageBuilder<'_>) -> Option<()>,
    ) -> Step<Handled> {
        let len = (|| {
            let mut b = MessageBuilder::response_to(out, msg, Class::SuccessResponse).ok()?;
            body(&mut b)?;
            self.finish(b, Some(auth)).ok()
        })();
        match len {
            Some(len) => Ok(Handled::Answered(Transmit {
                len,
                from: five.server,
                to: five.client,
            })),
            None => Err(Handled::Dropped(Dropped::NoRoom)),
        }
    }

    /// SOFTWARE, integrity (the variant the request used), FINGERPRINT.
    pub(super) fn finish(
        &self,
        mut b: MessageBuilder<'_>,
        auth: Option<&Auth>,
    ) -> Result<usize, ()> {
        if let Some(s) = &self.config.software {
            b.add(&Software(s)).map_err(|_| ())?;
        }
        if let Some(a) = auth {
            if a.sha256_integrity {
                b.add_message_integrity_sha256(a.key.bytes())
                    .map_err(|_| ())?;
            } else {
                b.add_message_integrity(a.key.bytes()).map_err(|_| ())?;
            }
        }
        b.add_fingerprint().map_err(|_| ())?;
        Ok(b.finish())
    }
}
