use std::time::Duration;
use std::time::Instant;

use crate::io::DATAGRAM_MAX_PACKET_SIZE;
use crate::packet::Vp8Patch;
use crate::rtp_::{ExtensionValues, MediaTime, Mid, Pt, Rid, RtpHeader};
use crate::rtp_::{SenderInfo, SeqNo, Ssrc, VideoOrientation};

use super::RtpPacket;
use super::payload::Payload;
use super::rtx_cache_buf::EvictingBuffer;

const RTX_CACHE_SIZE_QUANTIZER: usize = 25;
const RTX_CACHE_QUANTIZE_SLOTS: usize = DATAGRAM_MAX_PACKET_SIZE / RTX_CACHE_SIZE_QUANTIZER;

#[derive(Debug)]
pub(crate) struct RtxCache {
    // Data, new additions here probably need to be cleared in [`clear`].
    packet_by_seq_no: EvictingBuffer<Sent>,

    // Technically we want [Option<SeqNo>; X] to indicate the absence of
    // a SeqNo. However We can half the storage space by using the sentinel
    // values SeqNo::MAX to indicate None
    seq_no_by_quantized_size: [SeqNo; RTX_CACHE_QUANTIZE_SLOTS],

    /// The packet last looked up, rebuilt from its record: the send path
    /// borrows an `RtpPacket` for a resend.
    looked_up: Option<RtpPacket>,
}

/// What the history keeps of a sent packet (Amphi patch).
///
/// An `RtpPacket` is 408 bytes, most of them room for header extension
/// values (192 bytes) and CSRCs (60) that a packet mostly does not carry.
/// Every packet sent is written into the history, a ring of some seconds
/// of packets that the cache has long dropped by the time the ring comes
/// round, so each byte of the record is a byte written to memory. This
/// record keeps the header's fields and the extension values packets
/// commonly carry inline, and the rest, when there is any, in `rare`.
#[derive(Debug)]
struct Sent {
    time: MediaTime,
    payload: Payload,
    timestamp: Instant,
    ssrc: Ssrc,
    rtp_time: u32,
    header_len: usize,
    sequence_number: u16,
    payload_type: Pt,
    version: u8,
    marker: bool,
    has_padding: bool,
    has_extension: bool,
    audio_level: Option<i8>,
    voice_activity: Option<bool>,
    video_orientation: Option<VideoOrientation>,
    frame_mark: Option<u32>,
    mid: Option<Mid>,
    rid: Option<Rid>,
    vp8_patch: Option<Vp8Patch>,
    rare: Option<Box<Rare>>,
}

/// The parts of a sent packet few packets have.
#[derive(Debug)]
struct Rare {
    csrc_count: usize,
    csrc: [u32; 15],
    /// The extension values not kept in [`Sent`] itself.
    ext_vals: ExtensionValues,
    last_sender_info: Option<SenderInfo>,
}

impl Sent {
    fn new(packet: RtpPacket) -> Sent {
        let RtpPacket {
            seq_no: _,
            time,
            header,
            payload,
            vp8_patch,
            timestamp,
            last_sender_info,
            nackable: _,
        } = packet;
        let RtpHeader {
            version,
            has_padding,
            has_extension,
            csrc_count,
            marker,
            payload_type,
            sequence_number,
            timestamp: rtp_time,
            ssrc,
            csrc,
            mut ext_vals,
            header_len,
        } = header;
        let audio_level = ext_vals.audio_level.take();
        let voice_activity = ext_vals.voice_activity.take();
        let video_orientation = ext_vals.video_orientation.take();
        let frame_mark = ext_vals.frame_mark.take();
        let mid = ext_vals.mid.take();
        let rid = ext_vals.rid.take();
        let rare = (csrc_count != 0
            || csrc != [0; 15]
            || last_sender_info.is_some()
            || !ext_vals.is_empty())
        .then(|| {
            Box::new(Rare {
                csrc_count,
                csrc,
                ext_vals,
                last_sender_info,
            })
        });
        Sent {
            time,
            payload,
            timestamp,
            ssrc,
            rtp_time,
            header_len,
            sequence_number,
            payload_type,
            version,
            marker,
            has_padding,
            has_extension,
            audio_level,
            voice_activity,
            video_orientation,
            frame_mark,
            mid,
            rid,
            vp8_patch,
            rare,
        }
    }

    /// The packet as it was cached (packets in the history are nackable).
    fn packet(&self, seq_no: SeqNo) -> RtpPacket {
        let (csrc_count, csrc, mut ext_vals, last_sender_info) = match &self.rare {
            Some(r) => (r.csrc_count, r.csrc, r.ext_vals.clone(), r.last_sender_info),
            None => (0, [0; 15], ExtensionValues::default(), None),
        };
        ext_vals.audio_level = self.audio_level;
        ext_vals.voice_activity = self.voice_activity;
        ext_vals.video_orientation = self.video_orientation;
        ext_vals.frame_mark = self.frame_mark;
        ext_vals.mid = self.mid;
        ext_vals.rid = self.rid;
        RtpPacket {
            seq_no,
            time: self.time,
            header: RtpHeader {
                version: self.version,
                has_padding: self.has_padding,
                has_extension: self.has_extension,
                csrc_count,
                marker: self.marker,
                payload_type: self.payload_type,
                sequence_number: self.sequence_number,
                timestamp: self.rtp_time,
                ssrc: self.ssrc,
                csrc,
                ext_vals,
                header_len: self.header_len,
            },
            payload: self.payload.clone(),
            vp8_patch: self.vp8_patch,
            timestamp: self.timestamp,
            last_sender_info,
            nackable: true,
        }
    }
}

impl RtxCache {
    pub fn new(max_packet_count: usize, max_packet_age: Duration) -> Self {
        Self {
            packet_by_seq_no: EvictingBuffer::new(10, max_packet_age, max_packet_count),
            seq_no_by_quantized_size: [SeqNo::MAX; RTX_CACHE_QUANTIZE_SLOTS],
            looked_up: None,
        }
    }

    pub fn cache_sent_packet(&mut self, packet: RtpPacket, now: Instant) {
        assert!(packet.nackable);
        let seq_no = packet.seq_no;
        let quantized_size = packet.payload.len() / RTX_CACHE_SIZE_QUANTIZER;
        self.packet_by_seq_no.push(*seq_no, now, Sent::new(packet));
        self.seq_no_by_quantized_size[quantized_size] = seq_no;
        self.remove_old_packets(now);
    }

    pub fn last_cached_seq_no(&self) -> Option<SeqNo> {
        Some(self.packet_by_seq_no.last_position()?.into())
    }

    /// The cached packet, rebuilt: changes to it are not kept.
    pub fn get_cached_packet_by_seq_no(&mut self, seq_no: SeqNo) -> Option<&mut RtpPacket> {
        let sent = self.packet_by_seq_no.get(*seq_no)?;
        Some(self.looked_up.insert(sent.packet(seq_no)))
    }

    /// The payload size of a cached packet, without rebuilding it.
    pub fn cached_payload_len(&self, seq_no: SeqNo) -> Option<usize> {
        Some(self.packet_by_seq_no.get(*seq_no)?.payload.len())
    }

    pub fn get_cached_packet_smaller_than(&mut self, max_size: usize) -> Option<&mut RtpPacket> {
        let quantized_size = max_size / RTX_CACHE_SIZE_QUANTIZER;

        let seq_no = self.seq_no_by_quantized_size[..quantized_size]
            .iter()
            .rev()
            .filter(|seq_no| !seq_no.is_max())
            .find(|seq_no| self.packet_by_seq_no.contains(***seq_no))?;

        self.get_cached_packet_by_seq_no(*seq_no)
    }

    fn remove_old_packets(&mut self, now: Instant) {
        self.packet_by_seq_no.maybe_evict(now);
    }

    pub(crate) fn last_packet(&self) -> Option<&[u8]> {
        let packet = self.packet_by_seq_no.last()?;
        Some(packet.payload.as_ref())
    }

    pub(crate) fn clear(&mut self) {
        self.packet_by_seq_no.clear();
        self.seq_no_by_quantized_size = [SeqNo::MAX; RTX_CACHE_QUANTIZE_SLOTS];
        self.looked_up = None;
    }
}

#[cfg(test)]
mod test {
    use crate::rtp_::MediaTime;
    use crate::rtp_::RtpHeader;

    use super::*;

    fn after(now: Instant, millis: u64) -> Instant {
        now + Duration::from_millis(millis)
    }

    fn packet(now: Instant, seq_no: u64, millis: u64) -> RtpPacket {
        RtpPacket {
            header: RtpHeader::default(),
            seq_no: seq_no.into(),
            time: MediaTime::from_90khz(0),
            payload: millis.to_be_bytes().into(),
            vp8_patch: None,
            timestamp: after(now, millis),
            last_sender_info: None,
            nackable: true,
        }
    }

    /// A packet that carries every kind of value the history keeps.
    /// `rare_exts`, `csrcs`: with values the history keeps out of line.
    fn full_packet(now: Instant, seq_no: u64, rare_exts: bool, csrcs: bool) -> RtpPacket {
        use crate::packet::Vp8Descriptor;
        use crate::rtp_::{AbsCaptureTime, VideoOrientation};

        // X=1, I=1, M=1: a 15-bit picture id.
        let vp8 = [0x90, 0x80, 0x81, 0x23, 0x9d];
        let mut p = packet(now, seq_no, 7);
        p.payload = vp8.as_slice().into();
        p.vp8_patch = Some(
            Vp8Descriptor::parse(&vp8)
                .expect("descriptor")
                .patch()
                .picture_id(0x1234)
                .build()
                .expect("patch"),
        );
        let h = &mut p.header;
        h.marker = true;
        h.payload_type = Pt::new_with_value(96);
        h.sequence_number = 4711;
        h.timestamp = 90_000;
        h.ssrc = 0x1234_5678.into();
        h.has_extension = true;
        h.header_len = 28;
        let e = &mut h.ext_vals;
        e.audio_level = Some(-30);
        e.voice_activity = Some(true);
        e.video_orientation = Some(VideoOrientation::Deg90);
        e.frame_mark = Some(0x8000_0000);
        e.mid = Some(Mid::from("v0"));
        e.rid = Some(Rid::from("h"));
        if rare_exts {
            e.abs_capture_time = Some(AbsCaptureTime {
                capture_time: std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                clock_offset: Some(-5),
            });
            e.video_content_type = Some(1);
            e.user_values.set(42u32);
        }
        if csrcs {
            h.csrc_count = 2;
            h.csrc[0] = 11;
            h.csrc[1] = 12;
        }
        p
    }

    #[test]
    fn a_packet_comes_back_from_the_history_as_it_was_sent() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(10, Duration::from_secs(3));
        let kinds = [(1, false, false), (2, true, false), (3, false, true)];
        for (seq_no, rare_exts, csrcs) in kinds {
            rtx_cache.cache_sent_packet(full_packet(now, seq_no, rare_exts, csrcs), now);
        }
        for (seq_no, rare_exts, csrcs) in kinds {
            let back = rtx_cache
                .get_cached_packet_by_seq_no(seq_no.into())
                .expect("cached");
            assert!(
                *back == full_packet(now, seq_no, rare_exts, csrcs),
                "packet {seq_no} changed in the history"
            );
            let user_value = back.header.ext_vals.user_values.get::<u32>();
            assert_eq!(user_value, rare_exts.then_some(&42));
            assert_eq!(rtx_cache.cached_payload_len(seq_no.into()), Some(5));
            // Only what has rare values keeps anything out of line.
            let sent = rtx_cache.packet_by_seq_no.get(seq_no).expect("record");
            assert_eq!(sent.rare.is_some(), rare_exts || csrcs, "packet {seq_no}");
        }
    }

    #[test]
    fn a_history_record_is_under_a_third_of_a_packet() {
        // Every packet sent is written into the history, into memory the
        // cache has long dropped: its size is what each packet costs there.
        assert!(
            std::mem::size_of::<Sent>() * 3 <= std::mem::size_of::<RtpPacket>(),
            "record {} bytes, packet {}",
            std::mem::size_of::<Sent>(),
            std::mem::size_of::<RtpPacket>()
        );
    }

    #[test]
    fn rtx_cache_0_sized() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(0, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), after(now, 10));
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_by_seq_no(1.into())
        );
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_smaller_than(1000)
        );
    }

    #[test]
    fn rtx_cache_0_duration() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(10, Duration::from_secs(0));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), after(now, 10));
        assert_eq!(None, rtx_cache.get_cached_packet_by_seq_no(1.into()));
        assert_eq!(None, rtx_cache.get_cached_packet_smaller_than(1000));
    }

    #[test]
    fn rtx_cache_1_sized() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(1, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), after(now, 10));
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_by_seq_no(1.into())
        );
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_smaller_than(1000)
        );
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_smaller_than(25)
        );
        assert_eq!(None, rtx_cache.get_cached_packet_smaller_than(24));
        rtx_cache.cache_sent_packet(packet(now, 2, 20), after(now, 20));
        assert_eq!(
            Some(&mut packet(now, 2, 20)),
            rtx_cache.get_cached_packet_by_seq_no(2.into())
        );
    }

    #[test]
    fn rtx_cache_100_sized_backwards() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(100, Duration::from_secs(3));

        for i in 1..=200 {
            let seq_no = 201 - i;
            let pkt = packet(now, seq_no, (201 - i) * 10);
            let now = after(now, i * 10);
            rtx_cache.cache_sent_packet(pkt, now);
        }

        assert_eq!(
            Some(&mut packet(now, 200, 2000)),
            rtx_cache.get_cached_packet_by_seq_no(200.into())
        );
        assert_eq!(None, rtx_cache.get_cached_packet_by_seq_no(100.into()));
        assert_eq!(None, rtx_cache.get_cached_packet_by_seq_no(101.into()));
    }

    #[test]
    fn rtx_cache_eviction() {
        let now = Instant::now();
        // Cache can take all entries
        let mut rtx_cache = RtxCache::new(400, Duration::from_secs(1));
        for i in 1..=200 {
            let seq_no = i;
            let pkt = packet(now, seq_no, i * 10);
            let now = after(now, i * 10);
            rtx_cache.cache_sent_packet(pkt, now);
        }

        assert_eq!(None, rtx_cache.get_cached_packet_by_seq_no(99.into()));

        assert_eq!(
            Some(&mut packet(now, 100, 1000)),
            rtx_cache.get_cached_packet_by_seq_no(100.into())
        );
        assert_eq!(
            Some(&mut packet(now, 200, 2000)),
            rtx_cache.get_cached_packet_by_seq_no(200.into())
        );
    }
}
