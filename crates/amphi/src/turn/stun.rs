//! The STUN message format (RFC 5389) as far as a TURN server (RFC 5766)
//! needs it: parsing requests and indications, building responses, and
//! MESSAGE-INTEGRITY / FINGERPRINT.
//!
//! Every length is checked against the buffer: input comes from anyone.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const MAGIC: u32 = 0x2112_A442;
pub const HEADER: usize = 20;

// Methods.
pub const BINDING: u16 = 0x001;
pub const ALLOCATE: u16 = 0x003;
pub const REFRESH: u16 = 0x004;
pub const SEND: u16 = 0x006;
pub const DATA: u16 = 0x007;
pub const CREATE_PERMISSION: u16 = 0x008;
pub const CHANNEL_BIND: u16 = 0x009;

/// Message classes, as the bits they set in the type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0x0000,
            Class::Indication => 0x0010,
            Class::Success => 0x0100,
            Class::Error => 0x0110,
        }
    }
}

// Attributes.
pub const USERNAME: u16 = 0x0006;
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ERROR_CODE: u16 = 0x0009;
pub const CHANNEL_NUMBER: u16 = 0x000C;
pub const LIFETIME: u16 = 0x000D;
pub const XOR_PEER_ADDRESS: u16 = 0x0012;
pub const DATA_ATTR: u16 = 0x0013;
pub const REALM: u16 = 0x0014;
pub const NONCE: u16 = 0x0015;
pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub const REQUESTED_TRANSPORT: u16 = 0x0019;
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub const SOFTWARE: u16 = 0x8022;
pub const FINGERPRINT: u16 = 0x8028;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StunError {
    #[error("not a STUN message")]
    NotStun,
    #[error("truncated STUN message")]
    Truncated,
    #[error("bad attribute")]
    BadAttribute,
}

/// A parsed message borrowing its buffer.
#[derive(Debug)]
pub struct Message<'a> {
    pub method: u16,
    pub class: Class,
    pub txid: [u8; 12],
    raw: &'a [u8],
    /// (type, value, offset of the attribute header in `raw`)
    attrs: Vec<(u16, &'a [u8], usize)>,
}

/// The length of the STUN message at the start of `buf`, if its header
/// looks like one (for framing on TCP).
pub fn message_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 4 || buf[0] & 0xC0 != 0 {
        return None;
    }
    Some(HEADER + usize::from(u16::from_be_bytes([buf[2], buf[3]])))
}

impl<'a> Message<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        if buf.len() < HEADER || buf[0] & 0xC0 != 0 {
            return Err(StunError::NotStun);
        }
        if u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC {
            return Err(StunError::NotStun);
        }
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if !len.is_multiple_of(4) {
            return Err(StunError::NotStun);
        }
        if buf.len() < HEADER + len {
            return Err(StunError::Truncated);
        }
        let raw = &buf[..HEADER + len];
        let typ = u16::from_be_bytes([buf[0], buf[1]]);
        let class = match typ & 0x0110 {
            0x0000 => Class::Request,
            0x0010 => Class::Indication,
            0x0100 => Class::Success,
            _ => Class::Error,
        };
        let method = (typ & 0x000F) | ((typ & 0x00E0) >> 1) | ((typ & 0x3E00) >> 2);
        let mut txid = [0u8; 12];
        txid.copy_from_slice(&buf[8..20]);
        let mut attrs = Vec::new();
        let mut pos = HEADER;
        while pos + 4 <= raw.len() {
            let t = u16::from_be_bytes([raw[pos], raw[pos + 1]]);
            let l = usize::from(u16::from_be_bytes([raw[pos + 2], raw[pos + 3]]));
            let start = pos + 4;
            let end = start + l;
            if end > raw.len() {
                return Err(StunError::BadAttribute);
            }
            attrs.push((t, &raw[start..end], pos));
            pos = start + l.div_ceil(4) * 4;
        }
        Ok(Message {
            method,
            class,
            txid,
            raw,
            attrs,
        })
    }

    pub fn attr(&self, t: u16) -> Option<&'a [u8]> {
        self.attrs.iter().find(|a| a.0 == t).map(|a| a.1)
    }

    pub fn attrs(&self, t: u16) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.attrs.iter().filter(move |a| a.0 == t).map(|a| a.1)
    }

    pub fn string(&self, t: u16) -> Option<&'a str> {
        self.attr(t).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn u32(&self, t: u16) -> Option<u32> {
        let v = self.attr(t)?;
        Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
    }

    pub fn xor_addr(&self, t: u16) -> Option<SocketAddr> {
        decode_xor_addr(self.attr(t)?, &self.txid)
    }

    pub fn xor_addrs(&self, t: u16) -> Vec<Option<SocketAddr>> {
        self.attrs(t)
            .map(|v| decode_xor_addr(v, &self.txid))
            .collect()
    }

    /// Whether MESSAGE-INTEGRITY is present and right for `key` (RFC 5389
    /// 15.4: HMAC-SHA1 over the message up to the attribute, with the
    /// length field counting up to its end).
    pub fn integrity_ok(&self, key: &[u8]) -> bool {
        let Some(&(_, value, offset)) = self.attrs.iter().find(|a| a.0 == MESSAGE_INTEGRITY) else {
            return false;
        };
        if value.len() != 20 {
            return false;
        }
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
            return false;
        };
        let Ok(len) = u16::try_from(offset + 24 - HEADER) else {
            return false;
        };
        mac.update(&self.raw[..2]);
        mac.update(&len.to_be_bytes());
        mac.update(&self.raw[4..offset]);
        mac.verify_slice(value).is_ok()
    }
}

fn decode_xor_addr(v: &[u8], txid: &[u8; 12]) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC >> 16) as u16;
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC.to_be_bytes());
    mask[4..].copy_from_slice(txid);
    match v[1] {
        0x01 if v.len() >= 8 => {
            let mut ip = [0u8; 4];
            for i in 0..4 {
                ip[i] = v[4 + i] ^ mask[i];
            }
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        0x02 if v.len() >= 20 => {
            let mut ip = [0u8; 16];
            for i in 0..16 {
                ip[i] = v[4 + i] ^ mask[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

fn encode_xor_addr(addr: SocketAddr, txid: &[u8; 12]) -> Vec<u8> {
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC.to_be_bytes());
    mask[4..].copy_from_slice(txid);
    let port = addr.port() ^ (MAGIC >> 16) as u16;
    let mut out = vec![0u8];
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(0x01);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend(ip.octets().iter().zip(mask).map(|(a, m)| a ^ m));
        }
        IpAddr::V6(ip) => {
            out.push(0x02);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend(ip.octets().iter().zip(mask).map(|(a, m)| a ^ m));
        }
    }
    out
}

/// Builds one message.
pub struct Builder {
    buf: Vec<u8>,
    txid: [u8; 12],
}

impl Builder {
    pub fn new(method: u16, class: Class, txid: [u8; 12]) -> Self {
        let typ = (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2);
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&(typ | class.bits()).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC.to_be_bytes());
        buf.extend_from_slice(&txid);
        Builder { buf, txid }
    }

    pub fn attr(mut self, t: u16, value: &[u8]) -> Self {
        self.push(t, value);
        self
    }

    fn push(&mut self, t: u16, value: &[u8]) {
        // Values here are at most one datagram: u16 always holds them.
        let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&t.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(&value[..usize::from(len)]);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self.set_len(self.buf.len());
    }

    fn set_len(&mut self, total: usize) {
        let len = u16::try_from(total - HEADER).unwrap_or(u16::MAX);
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn xor_addr(self, t: u16, addr: SocketAddr) -> Self {
        let v = encode_xor_addr(addr, &self.txid);
        self.attr(t, &v)
    }

    pub fn u32(self, t: u16, v: u32) -> Self {
        self.attr(t, &v.to_be_bytes())
    }

    pub fn error(self, code: u16, reason: &str) -> Self {
        let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
        v.extend_from_slice(reason.as_bytes());
        self.attr(ERROR_CODE, &v)
    }

    /// SOFTWARE, MESSAGE-INTEGRITY with `key` (if any), then FINGERPRINT.
    pub fn finish(mut self, key: Option<&[u8]>) -> Vec<u8> {
        if self.buf[0] & 0x01 != 0 {
            // Responses name the server (not indications: they are per packet).
            self.push(SOFTWARE, b"amphi");
        }
        if let Some(key) = key {
            // The length must already count the integrity attribute.
            self.set_len(self.buf.len() + 24);
            let digest = match Hmac::<Sha1>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(&self.buf);
                    mac.finalize().into_bytes().to_vec()
                }
                Err(_) => vec![0; 20],
            };
            self.push(MESSAGE_INTEGRITY, &digest);
        }
        self.set_len(self.buf.len() + 8);
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&self.buf) ^ 0x5354_554E;
        self.push(FINGERPRINT, &crc.to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_integrity() {
        let txid = [7u8; 12];
        let peer: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let msg = Builder::new(ALLOCATE, Class::Request, txid)
            .attr(USERNAME, b"1700000000:P1")
            .xor_addr(XOR_PEER_ADDRESS, peer)
            .finish(Some(b"key"));
        let m = Message::parse(&msg).unwrap();
        assert_eq!((m.method, m.class), (ALLOCATE, Class::Request));
        assert_eq!(m.string(USERNAME), Some("1700000000:P1"));
        assert_eq!(m.xor_addr(XOR_PEER_ADDRESS), Some(peer));
        assert!(m.integrity_ok(b"key"));
        assert!(!m.integrity_ok(b"other"));
        let v6: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        let msg = Builder::new(CHANNEL_BIND, Class::Success, txid)
            .xor_addr(XOR_PEER_ADDRESS, v6)
            .finish(None);
        assert_eq!(
            Message::parse(&msg).unwrap().xor_addr(XOR_PEER_ADDRESS),
            Some(v6)
        );
    }

    #[test]
    fn method_and_class_bits() {
        let m = Builder::new(CHANNEL_BIND, Class::Error, [0; 12]).finish(None);
        assert_eq!(u16::from_be_bytes([m[0], m[1]]), 0x0119);
        let m = Message::parse(&m).unwrap();
        assert_eq!((m.method, m.class), (CHANNEL_BIND, Class::Error));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(Message::parse(b"hello").unwrap_err(), StunError::NotStun);
        let mut m = Builder::new(BINDING, Class::Request, [1; 12])
            .attr(SOFTWARE, b"x")
            .finish(None);
        m[3] += 4; // claims more than there is
        assert!(Message::parse(&m).is_err());
        // An attribute longer than the message.
        let mut m = Builder::new(BINDING, Class::Request, [1; 12])
            .attr(SOFTWARE, b"abcd")
            .finish(None);
        m[HEADER + 3] = 200;
        assert_eq!(Message::parse(&m).unwrap_err(), StunError::BadAttribute);
    }
}
