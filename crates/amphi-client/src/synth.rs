//! Synthetic media: RTP payloads that look like Opus and VP8 to an SFU, and
//! the parsing the receiving side needs (keyframe detection, send stamps).
//!
//! Nothing here decodes: an SFU only looks at the VP8 payload descriptor
//! (RFC 7741) and the first bytes of the VP8 payload header, so that is what
//! is made faithful. The rest of each payload is filler followed by a
//! 12-byte *send stamp* (`b"AMPH"` + microseconds since the Unix epoch, big
//! endian), which survives forwarding and lets the receiver measure latency.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Magic in front of the send stamp at the end of every payload.
pub const STAMP_MAGIC: [u8; 4] = *b"AMPH";
/// Length of the send stamp trailer.
pub const STAMP_LEN: usize = 12;

/// Opus TOC byte: config 15 (hybrid, fullband, 20 ms), mono, one frame.
pub const OPUS_TOC: u8 = 15 << 3;

/// RTP clock rates.
pub const OPUS_CLOCK: u32 = 48_000;
pub const VIDEO_CLOCK: u32 = 90_000;

/// The VP8 keyframe start code (RFC 6386 §9.1).
pub const VP8_START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];

/// Microseconds since the Unix epoch now (0 if the clock is before 1970).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as u64
}

/// The send stamp at the end of `payload`, if it has one.
pub fn read_stamp(payload: &[u8]) -> Option<u64> {
    let start = payload.len().checked_sub(STAMP_LEN)?;
    let trailer = payload.get(start..)?;
    if trailer[..4] != STAMP_MAGIC {
        return None;
    }
    let mut micros = [0u8; 8];
    micros.copy_from_slice(&trailer[4..]);
    Some(u64::from_be_bytes(micros))
}

/// Replaces the send stamp at the end of `payload` (one made by this
/// module) with `stamp_us`; a payload without one is left alone.
pub fn restamp(payload: &mut [u8], stamp_us: u64) {
    if read_stamp(payload).is_none() {
        return;
    }
    let start = payload.len() - 8;
    payload[start..].copy_from_slice(&stamp_us.to_be_bytes());
}

fn push_stamp(buf: &mut Vec<u8>, stamp_us: u64) {
    buf.extend_from_slice(&STAMP_MAGIC);
    buf.extend_from_slice(&stamp_us.to_be_bytes());
}

/// Fills `buf` up to `len - STAMP_LEN` with a recognisable pattern, then
/// appends the stamp. The result is at least `buf.len() + STAMP_LEN` long.
fn finish_payload(buf: &mut Vec<u8>, len: usize, stamp_us: u64) {
    let body = len.saturating_sub(STAMP_LEN);
    let mut i = buf.len();
    while buf.len() < body {
        buf.push((i as u8).wrapping_mul(31).wrapping_add(7));
        i += 1;
    }
    push_stamp(buf, stamp_us);
}

/// One Opus packet: a TOC byte, filler, the stamp.
pub fn opus_payload(len: usize, stamp_us: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(len.max(1 + STAMP_LEN));
    buf.push(OPUS_TOC);
    finish_payload(&mut buf, len, stamp_us);
    buf
}

/// Shape of the synthetic video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoShape {
    pub width: u16,
    pub height: u16,
    /// RTP packets per frame (at least 1).
    pub packets_per_frame: usize,
    /// Payload bytes per RTP packet (descriptor included).
    pub packet_size: usize,
}

/// Length of the VP8 payload descriptor written here: X=1, I=1, 15-bit
/// PictureID (as Chrome sends it).
pub const VP8_DESCRIPTOR_LEN: usize = 4;

fn vp8_descriptor(buf: &mut Vec<u8>, start: bool, picture_id: u16) {
    // X=1 (extension present), N=0, S, PID=0.
    buf.push(0x80 | if start { 0x10 } else { 0 });
    // I=1 (PictureID present), L=0, T=0, K=0.
    buf.push(0x80);
    // M=1: 15-bit PictureID.
    let pid = picture_id & 0x7fff;
    buf.push(0x80 | (pid >> 8) as u8);
    buf.push(pid as u8);
}

/// The payloads of one VP8 frame, split in `shape.packets_per_frame`
/// packets. The first carries S=1 and the VP8 payload header (frame tag;
/// for a keyframe also the start code and dimensions). The caller sets the
/// RTP marker bit on the last.
pub fn vp8_frame(
    shape: &VideoShape,
    keyframe: bool,
    picture_id: u16,
    stamp_us: u64,
) -> Vec<Vec<u8>> {
    let packets = shape.packets_per_frame.max(1);
    // Room for descriptor + frame tag + keyframe header + stamp.
    let size = shape.packet_size.max(VP8_DESCRIPTOR_LEN + 10 + STAMP_LEN);
    let frame_bytes = packets * (size - VP8_DESCRIPTOR_LEN);
    // First partition: say a third of the frame, capped to 19 bits.
    let first_part = ((frame_bytes / 3) as u32).min((1 << 19) - 1);
    (0..packets)
        .map(|i| {
            let mut buf = Vec::with_capacity(size);
            vp8_descriptor(&mut buf, i == 0, picture_id);
            if i == 0 {
                // Frame tag (RFC 6386 §9.1), little endian: P (0 = key frame),
                // version 0, show_frame 1, first_part_size.
                let tag = u32::from(!keyframe) | (1 << 4) | (first_part << 5);
                buf.extend_from_slice(&tag.to_le_bytes()[..3]);
                if keyframe {
                    buf.extend_from_slice(&VP8_START_CODE);
                    // 14-bit dimensions, scale 0.
                    buf.extend_from_slice(&(shape.width & 0x3fff).to_le_bytes());
                    buf.extend_from_slice(&(shape.height & 0x3fff).to_le_bytes());
                }
            }
            finish_payload(&mut buf, size, stamp_us);
            buf
        })
        .collect()
}

/// What the receiver learns from one VP8 RTP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Info {
    /// S=1 and partition 0: the packet begins a frame.
    pub starts_frame: bool,
    /// The packet begins a keyframe: P=0 in the payload header and the start
    /// code present, as in a real keyframe.
    pub keyframe: bool,
    pub picture_id: Option<u16>,
    /// Dimensions from a keyframe header.
    pub size: Option<(u16, u16)>,
}

/// Parses the VP8 payload descriptor (RFC 7741 §4.2) and, on the first
/// packet of a frame, the payload header. `None` if the payload is too short
/// for what its descriptor announces.
pub fn parse_vp8(payload: &[u8]) -> Option<Vp8Info> {
    let b0 = *payload.first()?;
    let x = b0 & 0x80 != 0;
    let s = b0 & 0x10 != 0;
    let partition = b0 & 0x07;
    let mut at = 1;
    let mut picture_id = None;
    if x {
        let ext = *payload.get(at)?;
        at += 1;
        if ext & 0x80 != 0 {
            let p0 = *payload.get(at)?;
            at += 1;
            if p0 & 0x80 != 0 {
                let p1 = *payload.get(at)?;
                at += 1;
                picture_id = Some((u16::from(p0 & 0x7f) << 8) | u16::from(p1));
            } else {
                picture_id = Some(u16::from(p0 & 0x7f));
            }
        }
        if ext & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    let header = payload.get(at..)?;
    if header.is_empty() {
        return None;
    }
    let starts_frame = s && partition == 0;
    let mut info = Vp8Info {
        starts_frame,
        keyframe: false,
        picture_id,
        size: None,
    };
    if starts_frame && header[0] & 0x01 == 0 && header.get(3..6) == Some(&VP8_START_CODE[..]) {
        info.keyframe = true;
        if let Some(dims) = header.get(6..10) {
            let w = u16::from_le_bytes([dims[0], dims[1]]) & 0x3fff;
            let h = u16::from_le_bytes([dims[2], dims[3]]) & 0x3fff;
            info.size = Some((w, h));
        }
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: VideoShape = VideoShape {
        width: 320,
        height: 180,
        packets_per_frame: 3,
        packet_size: 600,
    };

    #[test]
    fn keyframe_first_packet_is_recognised() {
        let frame = vp8_frame(&SHAPE, true, 0x1234, 42);
        assert_eq!(frame.len(), 3);
        let info = parse_vp8(&frame[0]).unwrap();
        assert!(info.starts_frame && info.keyframe);
        assert_eq!(info.picture_id, Some(0x1234));
        assert_eq!(info.size, Some((320, 180)));
        // str0m agrees.
        assert!(
            str0m::rtp::Vp8Descriptor::parse(&frame[0])
                .unwrap()
                .starts_keyframe(&frame[0])
        );
        for p in &frame[1..] {
            let info = parse_vp8(p).unwrap();
            assert!(!info.starts_frame && !info.keyframe);
        }
        for p in &frame {
            assert_eq!(p.len(), 600);
            assert_eq!(read_stamp(p), Some(42));
        }
    }

    #[test]
    fn restamp_replaces_only_the_stamp() {
        let mut frame = vp8_frame(&SHAPE, true, 7, 42);
        let before = frame[0].clone();
        restamp(&mut frame[0], 4242);
        assert_eq!(read_stamp(&frame[0]), Some(4242));
        assert_eq!(frame[0][..600 - 8], before[..600 - 8]);
        // Not one of ours: untouched.
        let mut other = vec![7u8; 40];
        restamp(&mut other, 1);
        assert_eq!(other, vec![7u8; 40]);
    }

    #[test]
    fn interframe_has_p_bit_set() {
        let frame = vp8_frame(&SHAPE, false, 7, 1);
        let info = parse_vp8(&frame[0]).unwrap();
        assert!(info.starts_frame && !info.keyframe);
        assert_eq!(frame[0][VP8_DESCRIPTOR_LEN] & 1, 1);
        assert!(
            !str0m::rtp::Vp8Descriptor::parse(&frame[0])
                .unwrap()
                .starts_keyframe(&frame[0])
        );
    }

    #[test]
    fn garbage_does_not_panic() {
        for p in [
            &[][..],
            &[0x80],
            &[0x90, 0x80],
            &[0x90, 0x80, 0x80],
            &[0xff; 3],
        ] {
            let _ = parse_vp8(p);
            let _ = read_stamp(p);
        }
        assert_eq!(
            parse_vp8(&[0x10, 0x00, 0, 0, 0x9d, 0x01, 0x2a]).map(|i| i.keyframe),
            Some(true)
        );
    }

    #[test]
    fn opus_payload_shape() {
        let p = opus_payload(80, 9);
        assert_eq!(p.len(), 80);
        assert_eq!(p[0], OPUS_TOC);
        assert_eq!(read_stamp(&p), Some(9));
        // Too small a size still yields TOC + stamp.
        assert_eq!(opus_payload(3, 1).len(), 1 + STAMP_LEN);
    }
}
