//! VP8 payload descriptors (RFC 7741): what the layer selector needs to read
//! from them, and the picture numbering a subscriber sees.
//!
//! A subscriber's decoder tracks frames by PictureID and, with temporal
//! layers, by TL0PICIDX. When the server drops frames of a higher temporal
//! layer, or switches to another simulcast encoder whose numbering is
//! unrelated, the numbers it forwards must still look like one encoder's:
//! contiguous, never going back. [`PictureNumbering`] keeps them so; str0m
//! writes the new values into the shared payload as it serialises each copy
//! ([`str0m::rtp::Vp8Patch`]), so no payload is copied here.

use str0m::rtp::{Vp8Descriptor, Vp8Patch};

const PICTURE_ID_MOD: u16 = 1 << 15;

/// The fields of one packet's VP8 payload descriptor that matter to an SFU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Info {
    /// PictureID, and whether it was sent in its 15-bit form.
    pub picture_id: Option<(u16, bool)>,
    pub tl0_pic_idx: Option<u8>,
    /// Temporal layer; `None` when the encoder sends no temporal layers.
    pub temporal: Option<u8>,
    /// Y bit: this frame depends only on the base temporal layer.
    pub layer_sync: bool,
    /// First packet of a frame (S bit on partition 0).
    pub frame_start: bool,
    /// First packet of a keyframe.
    pub keyframe_start: bool,
    /// Frame size, read from a keyframe's header.
    pub size: Option<(u16, u16)>,
}

impl Vp8Info {
    /// Reads the descriptor; `None` if the payload is too short to be VP8.
    pub fn parse(payload: &[u8]) -> Option<Vp8Info> {
        let first = *payload.first()?;
        let mut info = Vp8Info {
            picture_id: None,
            tl0_pic_idx: None,
            temporal: None,
            layer_sync: false,
            frame_start: first & 0x10 != 0 && first & 0x07 == 0,
            keyframe_start: false,
            size: None,
        };
        let mut at = 1;
        if first & 0x80 != 0 {
            let x = *payload.get(at)?;
            at += 1;
            if x & 0x80 != 0 {
                let hi = *payload.get(at)?;
                at += 1;
                if hi & 0x80 != 0 {
                    let lo = *payload.get(at)?;
                    at += 1;
                    info.picture_id = Some(((u16::from(hi & 0x7f) << 8) | u16::from(lo), true));
                } else {
                    info.picture_id = Some((u16::from(hi), false));
                }
            }
            if x & 0x40 != 0 {
                info.tl0_pic_idx = Some(*payload.get(at)?);
                at += 1;
            }
            if x & 0x30 != 0 {
                let b = *payload.get(at)?;
                at += 1;
                if x & 0x20 != 0 {
                    info.temporal = Some(b >> 6);
                    info.layer_sync = b & 0x20 != 0;
                }
            }
        }
        let frame = payload.get(at..)?;
        if info.frame_start && frame.first().is_some_and(|tag| tag & 0x01 == 0) {
            info.keyframe_start = true;
            // RFC 6386 9.1: 3-byte frame tag, start code, then 14-bit
            // width and height (the top two bits are scaling).
            if frame.len() >= 10 && frame[3..6] == [0x9d, 0x01, 0x2a] {
                let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
                let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
                info.size = Some((w, h));
            }
        }
        Some(info)
    }
}

/// The PictureID and TL0PICIDX one subscriber sees for one track.
#[derive(Debug, Default)]
pub struct PictureNumbering {
    /// Outgoing = incoming - offset (modulo the field's size).
    picture_offset: u16,
    tl0_offset: u8,
    /// The last values sent, to continue from after a switch.
    last_picture: Option<u16>,
    last_tl0: Option<u8>,
    /// The incoming PictureID of the last frame dropped, so that each
    /// dropped frame closes the gap once.
    last_dropped: Option<u16>,
}

impl PictureNumbering {
    /// The values to write into a forwarded packet. `rebase` is set for the
    /// first packet after a switch of source (a keyframe): its numbers then
    /// follow the last ones sent.
    pub fn forward(&mut self, info: &Vp8Info, rebase: bool) -> (Option<u16>, Option<u8>) {
        let picture = info.picture_id.map(|(pid, _)| {
            if rebase {
                let next = self.last_picture.map_or(pid, |l| (l + 1) % PICTURE_ID_MOD);
                self.picture_offset = pid.wrapping_sub(next) % PICTURE_ID_MOD;
                self.last_dropped = None;
            }
            let out = pid.wrapping_sub(self.picture_offset) % PICTURE_ID_MOD;
            if self.last_picture.is_none_or(|l| newer15(out, l)) {
                self.last_picture = Some(out);
            }
            out
        });
        let tl0 = info.tl0_pic_idx.map(|idx| {
            if rebase {
                let next = self.last_tl0.map_or(idx, |l| l.wrapping_add(1));
                self.tl0_offset = idx.wrapping_sub(next);
            }
            let out = idx.wrapping_sub(self.tl0_offset);
            if self
                .last_tl0
                .is_none_or(|l| (out.wrapping_sub(l) as i8) > 0)
            {
                self.last_tl0 = Some(out);
            }
            out
        });
        (picture, tl0)
    }

    /// A frame of a temporal layer the subscriber does not get: the frames
    /// after it are renumbered to close the gap.
    pub fn drop_frame(&mut self, info: &Vp8Info) {
        let Some((pid, _)) = info.picture_id else {
            return;
        };
        if self.last_dropped != Some(pid) {
            self.last_dropped = Some(pid);
            self.picture_offset = (self.picture_offset + 1) % PICTURE_ID_MOD;
        }
    }

    /// The str0m patch that writes `values` into `payload`'s descriptor, if
    /// anything changes.
    /// `descriptor` is str0m's parse of the same payload (done once per
    /// packet, not per subscriber).
    pub fn patch(
        descriptor: Option<&Vp8Descriptor>,
        info: &Vp8Info,
        values: (Option<u16>, Option<u8>),
    ) -> Option<Vp8Patch> {
        let unchanged = values.0 == info.picture_id.map(|(p, _)| p) && values.1 == info.tl0_pic_idx;
        if unchanged {
            return None;
        }
        let mut builder = descriptor?.patch();
        if let Some((pid, long)) = values.0.zip(info.picture_id.map(|(_, l)| l)) {
            // A 7-bit PictureID wraps at 128.
            builder = builder.picture_id(if long { pid } else { pid & 0x7f });
        }
        if let Some(tl0) = values.1 {
            builder = builder.tl0_pic_idx(tl0);
        }
        builder.build().ok()
    }
}

/// `a` comes after `b` in 15-bit serial number arithmetic.
fn newer15(a: u16, b: u16) -> bool {
    let d = a.wrapping_sub(b) % PICTURE_ID_MOD;
    d != 0 && d < PICTURE_ID_MOD / 2
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A VP8 packet as Chrome sends it with temporal layers: X, I (15-bit),
    /// L, T set.
    pub(crate) fn vp8_packet(
        pid: u16,
        tl0: u8,
        tid: u8,
        sync: bool,
        key: bool,
        start: bool,
    ) -> Vec<u8> {
        let mut p = vec![
            0x80 | if start { 0x10 } else { 0 },
            0xe0,
            0x80 | (pid >> 8) as u8,
            pid as u8,
            tl0,
            (tid << 6) | if sync { 0x20 } else { 0 },
        ];
        if key {
            // Frame tag (P=0), start code, 640x360.
            p.extend_from_slice(&[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]);
        } else {
            p.extend_from_slice(&[0x01, 0x00, 0x00, 0x00]);
        }
        p
    }

    #[test]
    fn reads_chrome_descriptors() {
        let k = Vp8Info::parse(&vp8_packet(300, 7, 0, false, true, true)).unwrap();
        assert_eq!(k.picture_id, Some((300, true)));
        assert_eq!(k.tl0_pic_idx, Some(7));
        assert_eq!(k.temporal, Some(0));
        assert!(k.keyframe_start && k.frame_start);
        assert_eq!(k.size, Some((640, 360)));
        let d = Vp8Info::parse(&vp8_packet(301, 7, 2, true, false, true)).unwrap();
        assert_eq!(d.temporal, Some(2));
        assert!(d.layer_sync && !d.keyframe_start);
        let middle = Vp8Info::parse(&vp8_packet(301, 7, 2, true, false, false)).unwrap();
        assert!(!middle.frame_start);
    }

    #[test]
    fn short_or_empty_payloads_are_not_vp8() {
        assert_eq!(Vp8Info::parse(&[]), None);
        assert_eq!(Vp8Info::parse(&[0x80]), None);
        assert_eq!(Vp8Info::parse(&[0x80, 0x80]), None);
        assert_eq!(Vp8Info::parse(&[0x90, 0xe0, 0x81]), None);
    }

    fn info(pid: u16, tl0: u8, tid: u8) -> Vp8Info {
        Vp8Info::parse(&vp8_packet(pid, tl0, tid, false, false, true)).unwrap()
    }

    #[test]
    fn dropped_frames_leave_no_gap_in_picture_ids() {
        let mut n = PictureNumbering::default();
        let (first, _) = n.forward(&info(10, 1, 0), true);
        n.drop_frame(&info(11, 1, 2));
        // Two packets of the same dropped frame close the gap once.
        n.drop_frame(&info(11, 1, 2));
        let (second, _) = n.forward(&info(12, 1, 1), false);
        n.drop_frame(&info(13, 1, 2));
        let (third, tl0) = n.forward(&info(14, 2, 0), false);
        assert_eq!(
            (second, third),
            (first.map(|p| p + 1), first.map(|p| p + 2))
        );
        assert_eq!(tl0, Some(2));
    }

    #[test]
    fn a_switch_continues_both_numberings() {
        let mut n = PictureNumbering::default();
        for (i, pid) in (30_000..30_010).enumerate() {
            n.forward(&info(pid, 200 + i as u8 / 4, 0), i == 0);
        }
        let last = n.last_picture.unwrap();
        let last_tl0 = n.last_tl0.unwrap();
        // Another encoder, with unrelated numbers, from its keyframe on.
        let (p, t) = n.forward(&info(5, 99, 0), true);
        assert_eq!(p, Some((last + 1) % PICTURE_ID_MOD));
        assert_eq!(t, Some(last_tl0.wrapping_add(1)));
        let (p2, _) = n.forward(&info(6, 99, 1), false);
        assert_eq!(p2, Some((last + 2) % PICTURE_ID_MOD));
    }

    #[test]
    fn picture_ids_wrap_at_15_bits() {
        let mut n = PictureNumbering::default();
        n.forward(&info(PICTURE_ID_MOD - 1, 0, 0), true);
        let (p, _) = n.forward(&info(0, 1, 0), false);
        assert_eq!(p, Some(0));
        n.forward(&info(7, 0, 0), true);
    }

    #[test]
    fn the_patch_writes_the_new_numbers() {
        let payload = vp8_packet(1_000, 50, 1, false, false, true);
        let i = Vp8Info::parse(&payload).unwrap();
        let d = Vp8Descriptor::parse(&payload).ok();
        assert!(PictureNumbering::patch(d.as_ref(), &i, (Some(1_000), Some(50))).is_none());
        assert!(PictureNumbering::patch(d.as_ref(), &i, (Some(12), Some(3))).is_some());
    }
}
