//! Reading the server name (SNI) out of a TLS ClientHello, without terminating TLS.
//!
//! Only what is needed to find the `server_name` extension is parsed; every length is checked against what
//! is actually there, so a truncated or hostile hello yields `None`, never a panic.

/// TLS record header: content type, legacy version, length.
const RECORD_HEADER: usize = 5;
const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;
const SERVER_NAME: u16 = 0x0000;
const HOST_NAME: u8 = 0x00;

/// Whether the bytes open a TLS handshake record.
pub fn is_tls_handshake(bytes: &[u8]) -> bool {
    bytes.len() >= 3 && bytes[0] == HANDSHAKE && bytes[1] == 0x03
}

/// How many bytes the first TLS record needs in all, once its header is in.
pub fn first_record_len(bytes: &[u8]) -> Option<usize> {
    let header = bytes.get(..RECORD_HEADER)?;
    Some(RECORD_HEADER + usize::from(u16::from_be_bytes([header[3], header[4]])))
}

/// The host name the client asked for, if the bytes hold a ClientHello with one.
pub fn client_hello_sni(bytes: &[u8]) -> Option<String> {
    if !is_tls_handshake(bytes) {
        return None;
    }
    let record_end = first_record_len(bytes)?.min(bytes.len());
    let mut hello = Reader::new(&bytes[RECORD_HEADER..record_end]);
    if hello.u8()? != CLIENT_HELLO {
        return None;
    }
    let _length = hello.take(3)?;
    let _version = hello.take(2)?;
    let _random = hello.take(32)?;
    let session_id = usize::from(hello.u8()?);
    hello.take(session_id)?;
    let suites = usize::from(hello.u16()?);
    hello.take(suites)?;
    let compression = usize::from(hello.u8()?);
    hello.take(compression)?;
    let extensions_len = usize::from(hello.u16()?);
    let mut extensions = Reader::new(hello.take(extensions_len)?);
    while let (Some(kind), Some(len)) = (extensions.u16(), extensions.u16()) {
        let data = extensions.take(usize::from(len))?;
        if kind != SERVER_NAME {
            continue;
        }
        let mut names = Reader::new(data);
        let list_len = usize::from(names.u16()?);
        let mut list = Reader::new(names.take(list_len)?);
        while let Some(name_type) = list.u8() {
            let name_len = usize::from(list.u16()?);
            let name = list.take(name_len)?;
            if name_type == HOST_NAME {
                return std::str::from_utf8(name)
                    .ok()
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()))
                    .map(str::to_owned);
            }
        }
        return None;
    }
    None
}

/// A cursor over bytes whose every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A minimal ClientHello carrying `server_name` = `name`.
    pub(crate) fn client_hello(name: &str) -> Vec<u8> {
        let mut sni = Vec::new();
        let entry_len = 3 + name.len();
        sni.extend_from_slice(&(entry_len as u16).to_be_bytes());
        sni.push(HOST_NAME);
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name.as_bytes());
        let mut extensions = Vec::new();
        extensions.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]); // ec_point_formats
        extensions.extend_from_slice(&SERVER_NAME.to_be_bytes());
        extensions.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        extensions.extend_from_slice(&sni);
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(&extensions);
        let mut handshake = vec![CLIENT_HELLO];
        handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend_from_slice(&body);
        let mut record = vec![HANDSHAKE, 0x03, 0x01];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    #[test]
    fn finds_the_server_name() {
        let hello = client_hello("api.example.test");
        assert_eq!(first_record_len(&hello), Some(hello.len()));
        assert_eq!(
            client_hello_sni(&hello).as_deref(),
            Some("api.example.test")
        );
    }

    #[test]
    fn every_truncation_is_none_not_a_panic() {
        let hello = client_hello("api.example.test");
        for cut in 0..hello.len() {
            assert_eq!(client_hello_sni(&hello[..cut]), None, "cut at {cut}");
        }
        assert_eq!(client_hello_sni(&hello[..hello.len() - 1]), None);
    }

    #[test]
    fn not_tls_is_none() {
        assert_eq!(client_hello_sni(b"GET / HTTP/1.1\r\n"), None);
    }
}
