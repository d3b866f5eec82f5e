//! ChannelData messages (RFC 8656 §12.4): a 4-byte header, channel number and length, then
//! the application data. Over TCP and TLS each message is padded to a multiple of 4 bytes;
//! over UDP padding is allowed but not required.

/// Channel numbers a client may bind. RFC 8656 §12 narrowed them to 0x4000 through 0x4FFF,
/// but RFC 5766 allowed up to 0x7FFE and its clients (coturn's own `turnutils_uclient`
/// among them) still pick numbers up there; nothing else starts with those bytes (RFC 7983
/// leaves 80..=127 unassigned), so the older range is accepted.
pub const CHANNELS: std::ops::RangeInclusive<u16> = 0x4000..=0x7FFE;

/// Header length.
pub const HEADER_LEN: usize = 4;

/// Whether `bytes` starts like a ChannelData message (first two bits 01), as opposed to STUN
/// (00).
pub fn is_channel_data(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|b| (0x40..=0x7F).contains(b))
}

/// A parsed ChannelData message borrowing its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel number.
    pub channel: u16,
    /// The application data (without padding).
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Parses one message; `None` if the channel number is outside [`CHANNELS`] or the
    /// length field runs past the bytes.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let header = bytes.get(..HEADER_LEN)?;
        let channel = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if !CHANNELS.contains(&channel) {
            return None;
        }
        let data = bytes.get(HEADER_LEN..HEADER_LEN + len)?;
        Some(ChannelData { channel, data })
    }

    /// Bytes a framed message takes on a stream: header, data, padding to 4 (RFC 8656 §12.5).
    pub fn stream_len(header: [u8; HEADER_LEN]) -> usize {
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        (HEADER_LEN + len + 3) & !3
    }

    /// Writes a message into `out`; `pad` adds the stream padding. Returns its length, or
    /// `None` if `out` is too small or the data longer than 65535 bytes.
    pub fn write(channel: u16, data: &[u8], pad: bool, out: &mut [u8]) -> Option<usize> {
        let len = u16::try_from(data.len()).ok()?;
        let total = if pad {
            (HEADER_LEN + data.len() + 3) & !3
        } else {
            HEADER_LEN + data.len()
        };
        let buf = out.get_mut(..total)?;
        buf[..2].copy_from_slice(&channel.to_be_bytes());
        buf[2..4].copy_from_slice(&len.to_be_bytes());
        buf[HEADER_LEN..HEADER_LEN + data.len()].copy_from_slice(data);
        buf[HEADER_LEN + data.len()..].fill(0);
        Some(total)
    }
}

/// The frame at the start of a TCP or TLS stream's `buf` (RFC 8656 §12.5): ChannelData (first
/// two bits 01), padded to 4 bytes, or a STUN message ([`farside_stun::framing::frame`]).
pub fn stream_frame(buf: &[u8]) -> farside_stun::framing::Frame {
    use farside_stun::framing::{Frame, frame};
    match buf {
        _ if is_channel_data(buf) => match buf.get(..HEADER_LEN) {
            Some(&[a, b, c, d]) => Frame::Message(ChannelData::stream_len([a, b, c, d])),
            _ => Frame::Incomplete,
        },
        _ => frame(buf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let mut out = [0u8; 16];
        let n = ChannelData::write(0x4001, b"hello", true, &mut out).expect("fits");
        assert_eq!(n, 12);
        assert_eq!(&out[..4], &[0x40, 0x01, 0, 5]);
        let cd = ChannelData::parse(&out[..n]).expect("parses");
        assert_eq!(cd.channel, 0x4001);
        assert_eq!(cd.data, b"hello");
        assert_eq!(ChannelData::stream_len([0x40, 0x01, 0, 5]), 12);
        assert_eq!(
            ChannelData::write(0x4001, b"hello", false, &mut out),
            Some(9)
        );
    }

    #[test]
    fn bad_messages() {
        assert!(ChannelData::parse(&[0x40, 0x00, 0, 5, 1, 2]).is_none());
        assert!(ChannelData::parse(&[0x7F, 0xFF, 0, 0]).is_none());
        assert!(ChannelData::parse(&[0x50, 0x00, 0, 0]).is_some());
        assert!(ChannelData::parse(&[0x3F, 0xFF, 0, 0]).is_none());
        assert!(ChannelData::parse(&[0x40]).is_none());
        assert!(is_channel_data(&[0x40, 0]));
        assert!(!is_channel_data(&[0x00, 1]));
    }

    #[test]
    fn stream_frames_are_stun_or_padded_channel_data() {
        use farside_stun::framing::Frame;
        assert_eq!(stream_frame(&[]), Frame::Incomplete);
        assert_eq!(stream_frame(&[0x00, 0x01, 0x00, 0x08]), Frame::Message(28));
        assert_eq!(stream_frame(&[0x40, 0x00, 0x00, 0x05]), Frame::Message(12));
        assert_eq!(stream_frame(&[0x40, 0x00]), Frame::Incomplete);
        assert_eq!(stream_frame(&[0x80, 0x00]), Frame::Invalid);
        assert_eq!(stream_frame(&[0xC0]), Frame::Invalid);
    }
}
