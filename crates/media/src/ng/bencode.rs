//! Bencode (the BitTorrent encoding the ng protocol carries): byte strings `<len>:<bytes>`,
//! integers `i<n>e`, lists `l…e` and dictionaries `d…e`. Read into borrowed [`Value`]s, with
//! a bound on nesting and on the number of items, so no input allocates beyond them.

/// Deepest nesting of lists and dictionaries read (ng messages use two levels).
pub const MAX_DEPTH: usize = 8;
/// Most values read in one message (an offer has a few dozen).
pub const MAX_ITEMS: usize = 1024;

/// A bencoded value, borrowing its strings from the buffer it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// A byte string.
    Bytes(&'a [u8]),
    /// An integer.
    Int(i64),
    /// A list.
    List(Vec<Value<'a>>),
    /// A dictionary, its entries in the order they came (not necessarily sorted).
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

/// Why bytes are not one bencoded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// It ends before the value does.
    Truncated,
    /// A byte no value can start with, or a malformed length or integer.
    Malformed,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More than [`MAX_ITEMS`] values.
    TooMany,
    /// A dictionary key that is not a byte string.
    BadKey,
    /// Bytes after the value.
    Trailing,
}

impl<'a> Value<'a> {
    /// Reads exactly one value from `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Value<'a>, Error> {
        let mut reader = Reader {
            bytes,
            at: 0,
            items: 0,
        };
        let v = reader.value(0)?;
        if reader.at != bytes.len() {
            return Err(Error::Trailing);
        }
        Ok(v)
    }

    /// The byte string, if it is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The value of `key` in a dictionary (the first, if a key repeats).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Dict(entries) => entries
                .iter()
                .find(|(k, _)| *k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Appends the value's encoding to `out`. Dictionaries are written in their order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bytes(b) => bytes(out, b),
            Value::Int(n) => {
                out.push(b'i');
                out.extend_from_slice(n.to_string().as_bytes());
                out.push(b'e');
            }
            Value::List(items) => {
                out.push(b'l');
                for v in items {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(entries) => {
                out.push(b'd');
                for (k, v) in entries {
                    bytes(out, k);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// Appends a byte string's encoding.
fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    items: usize,
}

impl<'a> Reader<'a> {
    fn value(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err(Error::TooMany);
        }
        match self.bytes.get(self.at).copied().ok_or(Error::Truncated)? {
            b'0'..=b'9' => self.string().map(Value::Bytes),
            b'i' => {
                self.at += 1;
                let n = self.digits_until(b'e', true)?;
                Ok(Value::Int(n))
            }
            b'l' | b'd' if depth >= MAX_DEPTH => Err(Error::TooDeep),
            b'l' => {
                self.at += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.at += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.at += 1;
                let mut entries = Vec::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(Error::BadKey);
                    }
                    let key = self.string()?;
                    entries.push((key, self.value(depth + 1)?));
                }
                self.at += 1;
                Ok(Value::Dict(entries))
            }
            _ => Err(Error::Malformed),
        }
    }

    fn peek(&self) -> Result<u8, Error> {
        self.bytes.get(self.at).copied().ok_or(Error::Truncated)
    }

    /// `<len>:<bytes>`.
    fn string(&mut self) -> Result<&'a [u8], Error> {
        let len = self.digits_until(b':', false)?;
        let len = usize::try_from(len).map_err(|_| Error::Malformed)?;
        let end = self.at.checked_add(len).ok_or(Error::Malformed)?;
        let s = self.bytes.get(self.at..end).ok_or(Error::Truncated)?;
        self.at = end;
        Ok(s)
    }

    /// Decimal digits up to `end` (consumed): a `-` first when `signed`, no leading zero but
    /// for 0 itself, no `-0`, at most 18 digits.
    fn digits_until(&mut self, end: u8, signed: bool) -> Result<i64, Error> {
        let rest = &self.bytes[self.at..];
        let stop = rest.iter().take(21).position(|&b| b == end);
        let Some(stop) = stop else {
            return Err(if rest.len() < 21 {
                Error::Truncated
            } else {
                Error::Malformed
            });
        };
        let text = &rest[..stop];
        let (negative, digits) = match text {
            [b'-', d @ ..] if signed => (true, d),
            d => (false, d),
        };
        let ok = !digits.is_empty()
            && digits.len() <= 18
            && digits.iter().all(u8::is_ascii_digit)
            && (digits[0] != b'0' || digits.len() == 1)
            && !(negative && digits == b"0");
        if !ok {
            return Err(Error::Malformed);
        }
        let n = digits
            .iter()
            .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
        self.at += stop + 1;
        Ok(if negative { -n } else { n })
    }
}
