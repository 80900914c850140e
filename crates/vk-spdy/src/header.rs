//! SPDY/3 name/value header blocks (before compression).
//!
//! Wire layout (all integers 32-bit big-endian):
//!
//! ```text
//! +------------------+
//! | number of names  |
//! +------------------+    repeated "number of names" times:
//! | name length      |
//! | name bytes       |    lowercase
//! | value length     |
//! | value bytes      |    several values are joined by a NUL byte
//! +------------------+
//! ```
//!
//! Go's framer (used by the apiserver through `moby/spdystream`) rejects a
//! block with an uppercase or a duplicated name, so [`Headers`] keeps names
//! lowercase and unique by construction. When decoding we are lenient
//! instead: names are lowercased and duplicates merged. Names and values are
//! text here; bytes that are not UTF-8 are replaced (`U+FFFD`), which never
//! happens with the headers Kubernetes sends (`streamtype`, `port`,
//! `requestid`).

use crate::error::{Result, SpdyError};

/// An ordered set of header names (lowercase, unique), each with one or more values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<String>)>,
}

impl Headers {
    /// An empty header set (what a kubelet sends in SYN_REPLY).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no header at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first value of `name` (matched case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).first().map(String::as_str)
    }

    /// Every value of `name` (matched case-insensitively), empty if absent.
    pub fn get_all(&self, name: &str) -> &[String] {
        self.position(name)
            .and_then(|i| self.entries.get(i))
            .map(|(_, v)| v.as_slice())
            .unwrap_or_default()
    }

    /// Whether `name` is present (matched case-insensitively).
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Sets `name` to the single value `value`, replacing earlier values.
    /// The name is stored lowercase.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = lowercase(name.into());
        let value = value.into();
        match self.position(&name) {
            Some(i) => {
                if let Some(entry) = self.entries.get_mut(i) {
                    entry.1 = vec![value];
                }
            }
            None => self.entries.push((name, vec![value])),
        }
    }

    /// Adds `value` to the values of `name`. The name is stored lowercase.
    ///
    /// A NUL byte inside a value is the wire separator between values, so such
    /// a value comes back from the peer as several values.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = lowercase(name.into());
        let value = value.into();
        match self.position(&name) {
            Some(i) => {
                if let Some(entry) = self.entries.get_mut(i) {
                    entry.1.push(value);
                }
            }
            None => self.entries.push((name, vec![value])),
        }
    }

    /// Removes `name` and returns its values.
    pub fn remove(&mut self, name: &str) -> Option<Vec<String>> {
        let i = self.position(name)?;
        Some(self.entries.remove(i).1)
    }

    /// The headers in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Appends the uncompressed wire form of the block to `out`.
    ///
    /// Fails only when a count or length does not fit the 32-bit fields.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        put_len(out, self.entries.len())?;
        for (name, values) in &self.entries {
            put_len(out, name.len())?;
            out.extend_from_slice(name.as_bytes());
            let value_len = values
                .iter()
                .map(String::len)
                .sum::<usize>()
                .saturating_add(values.len().saturating_sub(1));
            put_len(out, value_len)?;
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    out.push(0);
                }
                out.extend_from_slice(value.as_bytes());
            }
        }
        Ok(())
    }

    /// Parses an uncompressed block. At most `max_headers` values (and so at
    /// most that many names) are accepted; every length is checked against the bytes actually present before
    /// anything is allocated, and trailing bytes are an error.
    pub fn decode(raw: &[u8], max_headers: usize) -> Result<Self> {
        let mut cursor = Cursor { rest: raw };
        let count = cursor.u32()?;
        if u64::from(count) > max_headers as u64 {
            return Err(SpdyError::TooManyHeaders {
                count: u64::from(count),
                limit: max_headers,
            });
        }
        // Each header needs at least 8 bytes of lengths: reject impossible
        // counts before reserving room for them.
        if u64::from(count) * 8 > cursor.rest.len() as u64 {
            return Err(SpdyError::MalformedHeaderBlock(
                "header count exceeds the block",
            ));
        }
        let mut headers = Headers {
            entries: Vec::with_capacity(count as usize),
        };
        let mut total_values = 0usize;
        for _ in 0..count {
            let name = cursor.bytes()?;
            let value = cursor.bytes()?;
            let name = lowercase(String::from_utf8_lossy(name).into_owned());
            total_values =
                total_values.saturating_add(1 + value.iter().filter(|&&b| b == 0).count());
            if total_values > max_headers {
                return Err(SpdyError::TooManyHeaders {
                    count: total_values as u64,
                    limit: max_headers,
                });
            }
            let values = value
                .split(|&b| b == 0)
                .map(|part| String::from_utf8_lossy(part).into_owned());
            match headers.position(&name) {
                Some(i) => {
                    if let Some(entry) = headers.entries.get_mut(i) {
                        entry.1.extend(values);
                    }
                }
                None => headers.entries.push((name, values.collect())),
            }
        }
        if !cursor.rest.is_empty() {
            return Err(SpdyError::MalformedHeaderBlock(
                "trailing bytes after the last header",
            ));
        }
        Ok(headers)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (k, v) in iter {
            headers.append(k, v);
        }
        headers
    }
}

fn lowercase(mut name: String) -> String {
    name.make_ascii_lowercase();
    name
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<()> {
    let len = u32::try_from(len)
        .map_err(|_| SpdyError::MalformedHeaderBlock("length does not fit 32 bits"))?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn u32(&mut self) -> Result<u32> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<4>()
            .ok_or(SpdyError::MalformedHeaderBlock("truncated length field"))?;
        self.rest = rest;
        Ok(u32::from_be_bytes(*head))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.u32()? as usize;
        if len > self.rest.len() {
            return Err(SpdyError::MalformedHeaderBlock("length exceeds the block"));
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_documented_layout() {
        let mut h = Headers::new();
        h.insert("StreamType", "error");
        h.append("x", "a");
        h.append("x", "b");
        let mut raw = Vec::new();
        h.encode(&mut raw).unwrap();
        let expected: &[u8] = b"\0\0\0\x02\
            \0\0\0\x0astreamtype\0\0\0\x05error\
            \0\0\0\x01x\0\0\0\x03a\0b";
        assert_eq!(raw, expected);
        assert_eq!(Headers::decode(&raw, 10).unwrap(), h);
    }

    #[test]
    fn lookups_ignore_case_and_names_are_lowercase() {
        let h: Headers = [("Port", "8080"), ("requestID", "0")].into_iter().collect();
        assert_eq!(h.get("port"), Some("8080"));
        assert_eq!(h.get("REQUESTID"), Some("0"));
        assert_eq!(
            h.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["port", "requestid"]
        );
    }

    #[test]
    fn decode_is_lenient_about_case_and_duplicates() {
        let raw = b"\0\0\0\x02\0\0\0\x01A\0\0\0\x011\0\0\0\x01a\0\0\0\x012";
        let h = Headers::decode(raw, 10).unwrap();
        assert_eq!(h.get_all("a"), ["1", "2"]);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn empty_value_is_one_empty_value() {
        let raw = b"\0\0\0\x01\0\0\0\x01a\0\0\0\0";
        assert_eq!(Headers::decode(raw, 10).unwrap().get_all("a"), [""]);
    }

    #[test]
    fn malformed_blocks_are_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"\0\0\0",
            b"\0\0\0\x01",
            b"\0\0\0\x01\0\0\0\x05ab\0\0\0\0",
            b"\0\0\0\x01\0\0\0\x01a\0\0\0\x09b",
            b"\0\0\0\x00extra",
            b"\xff\xff\xff\xff\0\0\0\0\0\0\0\0",
        ];
        for raw in cases {
            assert!(Headers::decode(raw, 1000).is_err(), "{raw:?} should fail");
        }
    }

    #[test]
    fn header_count_limit() {
        let mut h = Headers::new();
        for i in 0..5 {
            h.insert(format!("h{i}"), "v");
        }
        let mut raw = Vec::new();
        h.encode(&mut raw).unwrap();
        assert!(matches!(
            Headers::decode(&raw, 4),
            Err(SpdyError::TooManyHeaders { count: 5, limit: 4 })
        ));
        assert_eq!(Headers::decode(&raw, 5).unwrap().len(), 5);
    }
}
