//! Random bytes from the kernel (`getrandom(2)`): the keys that sign nonces and the seeds of
//! transaction ids must come from a cryptographically secure source.

use std::io;

/// Fills `buf` from the kernel's CSPRNG, blocking only until it is seeded at boot.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes for the whole call.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        done += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_differs() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        random_bytes(&mut a).expect("getrandom");
        random_bytes(&mut b).expect("getrandom");
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
