//! Loss recovery: how much each connection keeps for retransmission.
//!
//! What str0m does in RTP mode, and what the engine relies on:
//! - On a publisher connection, str0m NACKs every incoming stream whose
//!   payload type has an RTX partner (VP8 and H.264 here) and turns the RTX
//!   answers back into the original packets, which `Sfu::forward` sends on
//!   late: the forwarder numbers them into the gap they left.
//! - On a subscriber connection, video is written `nackable`, so str0m keeps
//!   each packet in the stream's RTX history and answers the subscriber's
//!   NACKs from it with RTX. The history is bounded twice: by
//!   [`VIDEO_HISTORY_PACKETS`] here and by [`VIDEO_HISTORY_AGE`].
//!   Retransmissions may take up to [`RTX_RATIO_CAP`] of a stream's bytes.
//! - What cannot be repaired (too old, or lost upstream for good) makes the
//!   browser send a PLI; str0m surfaces it as `Event::KeyframeRequest` and
//!   the engine asks the publisher for a keyframe, throttled per layer.
//! - Audio is never retransmitted: a resent Opus frame would come too late
//!   for the jitter buffer. Opus in-band FEC (`useinbandfec=1`, which str0m
//!   puts in its Opus format both ways) lets the receiver rebuild a lost
//!   frame from the next one.

use std::time::{Duration, Instant};

use str0m::RtcConfig;
use str0m::format::{CodecConfig, PayloadParams};
use str0m::media::Pt;
use str0m::rtp::{Payload, StreamTx};

use crate::track::CodecInfo;

/// Video packets kept per subscriber stream to answer NACKs: about 1.6 s
/// at 1.5 Mbit/s and 1 s at 2.5 Mbit/s, several RTTs of even a slow link
/// (a browser asks again every RTT, and a packet later than that shows
/// only after the picture froze), and more than the largest keyframe. The
/// packets share their payloads with the publisher's, but each entry is
/// still str0m's whole packet record, about 420 bytes: at 512 entries this
/// history was a third of a subscriber's memory.
pub const VIDEO_HISTORY_PACKETS: usize = 256;

/// Audio send buffer per stream. Audio is not retransmitted, so nothing is
/// kept for NACKs; this only bounds what waits between a write and the
/// next poll.
pub const AUDIO_SEND_BUFFER: usize = 64;

/// The recovery part of every connection's configuration.
pub(crate) fn configure(config: RtcConfig) -> RtcConfig {
    config
        .set_send_buffer_video(VIDEO_HISTORY_PACKETS)
        .set_send_buffer_audio(AUDIO_SEND_BUFFER)
}

/// How old a packet in a subscriber stream's RTX history may be (str0m's
/// default): older than this, a retransmission is too late to show.
pub const VIDEO_HISTORY_AGE: Duration = Duration::from_secs(3);

/// Share of a subscriber video stream's bytes that retransmissions may take
/// before str0m drops the NACKs still queued. str0m's default, 0.15, is hit
/// by the bursts of loss of a downlink slower than its estimate; the NACKs
/// it drops then leave the picture frozen until the browser gives up and
/// asks for a keyframe (seconds, on such a link). Half still bounds what a
/// subscriber asking for everything again can cost.
pub const RTX_RATIO_CAP: f32 = 0.5;

/// The recovery part of a subscriber video stream, once it exists (str0m
/// makes the stream when the answer is accepted).
pub(crate) fn configure_video_stream(tx: &mut StreamTx) {
    tx.set_rtx_cache(
        VIDEO_HISTORY_PACKETS,
        VIDEO_HISTORY_AGE,
        Some(RTX_RATIO_CAP),
    );
}

// ----- RED (RFC 2198) for audio ----------------------------------------

/// Whether Opus is offered and answered with RED. A RED packet carries the
/// previous frame again next to the current one: one lost packet costs
/// nothing, at about twice the audio bitrate (~30 kbit/s more per
/// microphone), which is small next to video.
pub const AUDIO_RED: bool = true;

/// RED headers are bounded like str0m's decoder bounds them: more blocks
/// than this is not a RED payload a browser makes.
const MAX_RED_BLOCKS: usize = 16;

/// The codec of an incoming payload type, and whether the packet is that
/// codec's RED wrapping (str0m folds a RED payload type onto its primary
/// codec's parameters and hands RED packets over as they came).
pub(crate) fn codec_of(params: &[PayloadParams], pt: Pt) -> Option<(CodecInfo, bool)> {
    if let Some(c) = CodecInfo::find(params, pt) {
        return Some((c, false));
    }
    let primary = params.iter().find(|p| p.red() == Some(pt))?;
    CodecInfo::find(params, primary.pt())
        .filter(|c| c.video.is_none())
        .map(|c| (c, true))
}

/// What subscribers get of one incoming RED packet, made once per kind of
/// subscriber (its Opus and RED payload types) and shared by the copies:
/// a lecture's students mostly run the same browsers, and a payload made
/// per copy was an allocation per student for every audio packet.
#[derive(Default)]
pub(crate) struct RedCopies {
    /// What goes out of the packet being forwarded, per subscriber kind.
    made: Vec<(SubscriberKind, Option<(Pt, Payload)>)>,
    /// Where a rebuilt RED payload is written before its pooled copy.
    scratch: Vec<u8>,
}

impl RedCopies {
    /// Forgets the last packet's payloads (call once per packet, before
    /// and after, so that their buffers go back to the pool).
    pub(crate) fn clear(&mut self) {
        self.made.clear();
    }

    /// What `subscriber` gets of an incoming RED packet whose primary codec
    /// arrived as `opus_in` and goes out as `opus_out` (its own Opus
    /// payload type): the same bytes under its RED payload type when it
    /// negotiated RED with the same Opus payload type (the usual case: both
    /// are 111 and 63), the blocks relabelled when the Opus payload types
    /// differ, and only the primary block, as plain Opus, when it did not
    /// negotiate RED. `None`: not a RED payload, or not one of Opus; drop
    /// it.
    pub(crate) fn for_subscriber(
        &mut self,
        subscriber: &CodecConfig,
        opus_in: Pt,
        opus_out: Pt,
        payload: &Payload,
        now: Instant,
    ) -> Option<(Pt, Payload)> {
        let red_out = subscriber
            .params()
            .iter()
            .find(|p| p.pt() == opus_out)
            .and_then(|p| p.red());
        let key = (opus_out, red_out);
        if let Some((_, made)) = self.made.iter().find(|(k, _)| *k == key) {
            return made.clone();
        }
        let made = self.make(opus_in, opus_out, red_out, payload, now);
        self.made.push((key, made.clone()));
        made
    }

    fn make(
        &mut self,
        opus_in: Pt,
        opus_out: Pt,
        red_out: Option<Pt>,
        payload: &Payload,
        now: Instant,
    ) -> Option<(Pt, Payload)> {
        let layout = red_layout(payload)?;
        if layout.primary_pt != *opus_in {
            return None;
        }
        let Some(red_out) = red_out else {
            let primary = payload.get(layout.primary_start..)?;
            return Some((opus_out, Payload::pooled(primary, now)));
        };
        if layout.only_primary_pt && opus_in == opus_out {
            return Some((red_out, payload.clone()));
        }
        // Another Opus payload type on this side, or blocks of another codec
        // (which the subscriber might not have): rebuild with the Opus blocks.
        relabel(payload, *opus_in, *opus_out, &mut self.scratch)?;
        Some((red_out, Payload::pooled(&self.scratch, now)))
    }
}

/// A subscriber's Opus payload type and its RED one, if it negotiated RED.
type SubscriberKind = (Pt, Option<Pt>);

/// Writes `red` into `out` with only its Opus blocks, relabelled from
/// `opus_in` to `opus_out`. `red` has passed [`red_layout`]: its headers
/// are bounded and its lengths fit.
fn relabel(red: &[u8], opus_in: u8, opus_out: u8, out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    // The redundant blocks' headers (4 bytes each) up to the primary's.
    let mut headers = 0;
    while *red.get(headers)? & 0x80 != 0 {
        let h = red.get(headers..headers + 4)?;
        if h[0] & 0x7f == opus_in {
            out.extend_from_slice(&[0x80 | opus_out, h[1], h[2], h[3]]);
        }
        headers += 4;
    }
    out.push(opus_out);
    // Their data, in the same order, then the primary's.
    let mut data = headers + 1;
    for h in red[..headers].chunks_exact(4) {
        let len = (usize::from(h[2] & 0x03) << 8) | usize::from(h[3]);
        if h[0] & 0x7f == opus_in {
            out.extend_from_slice(red.get(data..data + len)?);
        }
        data += len;
    }
    out.extend_from_slice(red.get(data..)?);
    Some(())
}

/// Where a RED payload's primary block starts, its payload type, and
/// whether every block has that payload type.
#[derive(Debug, PartialEq, Eq)]
struct RedLayout {
    primary_pt: u8,
    primary_start: usize,
    only_primary_pt: bool,
}

/// Walks RED block headers without allocating (this runs per packet and
/// subscriber): 4 bytes per redundant block (F=1, PT, 14-bit timestamp
/// offset, 10-bit length), then 1 byte for the primary (F=0, PT).
fn red_layout(data: &[u8]) -> Option<RedLayout> {
    let mut at = 0;
    let mut redundant_len = 0;
    let mut blocks = 0;
    // The payload type of the redundant blocks, if they all share one.
    let mut redundant_pt: Option<u8> = None;
    let mut uniform = true;
    loop {
        let first = *data.get(at)?;
        let pt = first & 0x7f;
        if first & 0x80 == 0 {
            let primary_start = at + 1 + redundant_len;
            if primary_start > data.len() {
                return None;
            }
            return Some(RedLayout {
                primary_pt: pt,
                primary_start,
                only_primary_pt: uniform && redundant_pt.is_none_or(|p| p == pt),
            });
        }
        blocks += 1;
        if blocks > MAX_RED_BLOCKS {
            return None;
        }
        uniform &= redundant_pt.is_none_or(|p| p == pt);
        redundant_pt = Some(pt);
        let hi = usize::from(*data.get(at + 2)? & 0x03);
        let lo = usize::from(*data.get(at + 3)?);
        redundant_len += (hi << 8) | lo;
        at += 4;
    }
}

/// The publish answer with RED first among an audio m-line's formats, when
/// RED was negotiated: a browser sends RED only when the answer prefers it
/// to the codec it wraps (libwebrtc takes RED only if it comes before its
/// primary codec). str0m writes each codec's RED payload type after it.
pub(crate) fn prefer_red(sdp: &str) -> String {
    let lines: Vec<&str> = sdp.split_inclusive('\n').collect();
    let mut out = String::with_capacity(sdp.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if !line.starts_with("m=audio ") {
            out.push_str(line);
            i += 1;
            continue;
        }
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.starts_with("m="))
            .map_or(lines.len(), |n| i + 1 + n);
        let red: Vec<&str> = lines[i + 1..end]
            .iter()
            .filter_map(|l| {
                let rest = l.strip_prefix("a=rtpmap:")?;
                let (pt, codec) = rest.split_once(' ')?;
                codec.to_ascii_lowercase().starts_with("red/").then_some(pt)
            })
            .collect();
        out.push_str(&red_first(line, &red));
        for l in &lines[i + 1..end] {
            out.push_str(l);
        }
        i = end;
    }
    out
}

/// `m=audio 9 UDP/TLS/RTP/SAVPF 111 63` -> `… 63 111` for `red = ["63"]`.
fn red_first(mline: &str, red: &[&str]) -> String {
    let body = mline.trim_end_matches(['\r', '\n']);
    let ending = &mline[body.len()..];
    let mut parts: Vec<&str> = body.split(' ').collect();
    if red.is_empty() || parts.len() < 4 {
        return mline.to_owned();
    }
    let formats = parts.split_off(3);
    let (first, rest): (Vec<&str>, Vec<&str>) = formats.iter().partition(|f| red.contains(f));
    parts.extend(first);
    parts.extend(rest);
    format!("{}{ending}", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::rtp::{RedDecoder, RedEncoder, RedundantBlock};

    fn red_for_subscriber(
        sub: &CodecConfig,
        opus_in: Pt,
        opus_out: Pt,
        payload: &Payload,
    ) -> Option<(Pt, Payload)> {
        RedCopies::default().for_subscriber(sub, opus_in, opus_out, payload, Instant::now())
    }

    const OPUS: u8 = 111;

    fn red(primary: &[u8], previous: &[u8]) -> Payload {
        let block = RedundantBlock {
            pt: OPUS,
            timestamp_offset: 960,
            payload: previous.to_vec(),
        };
        Payload::from(RedEncoder::encode(OPUS, primary, &[block]))
    }

    fn config(with_red: bool) -> CodecConfig {
        let mut c = CodecConfig::new_with_defaults();
        c.clear();
        c.enable_opus(true, with_red);
        c
    }

    #[test]
    fn layout_of_red_payloads() {
        let p = red(&[1, 2, 3], &[9, 9]);
        assert_eq!(
            red_layout(&p),
            Some(RedLayout {
                primary_pt: OPUS,
                primary_start: 5 + 2,
                only_primary_pt: true
            })
        );
        // Primary only.
        assert_eq!(red_layout(&[OPUS, 7, 7]).map(|l| l.primary_start), Some(1));
        // Truncated header, a length past the end, too many blocks, empty.
        assert_eq!(red_layout(&[0x80 | OPUS, 0, 0]), None);
        assert_eq!(red_layout(&[0x80 | OPUS, 0, 0, 50, OPUS, 1]), None);
        assert_eq!(red_layout(&[0x80 | OPUS, 0, 0, 0].repeat(20)), None);
        assert_eq!(red_layout(&[]), None);
    }

    #[test]
    fn passed_through_unchanged_when_the_subscriber_has_red() {
        let sub = config(true);
        let p = red(&[1, 2, 3], &[4, 5]);
        let (pt, out) = red_for_subscriber(&sub, OPUS.into(), OPUS.into(), &p).unwrap();
        assert_eq!(Some(pt), sub.params()[0].red());
        assert!(
            std::ptr::eq(out.as_ptr(), p.as_ptr()),
            "the payload is shared, not copied"
        );
    }

    #[test]
    fn unwrapped_to_opus_for_a_subscriber_without_red() {
        let sub = config(false);
        let p = red(&[1, 2, 3], &[4, 5]);
        let (pt, out) = red_for_subscriber(&sub, OPUS.into(), OPUS.into(), &p).unwrap();
        assert_eq!(*pt, OPUS);
        assert_eq!(&*out, &[1, 2, 3]);
    }

    #[test]
    fn relabelled_when_the_opus_payload_types_differ() {
        // The publisher's Opus is 109, the subscriber's 111.
        let sub = config(true);
        let block = RedundantBlock {
            pt: 109,
            timestamp_offset: 960,
            payload: vec![4, 5],
        };
        let p = Payload::from(RedEncoder::encode(109, &[1, 2, 3], &[block]));
        let (pt, out) = red_for_subscriber(&sub, 109.into(), OPUS.into(), &p).unwrap();
        assert_eq!(Some(pt), sub.params()[0].red());
        let blocks = RedDecoder::decode(&out).unwrap();
        assert_eq!(blocks.len(), 2);
        assert!(blocks.iter().all(|b| b.pt == OPUS));
        assert_eq!(blocks[0].payload, &[4, 5]);
        assert_eq!(blocks[0].timestamp_offset, 960);
        assert_eq!(blocks[1].payload, &[1, 2, 3]);
    }

    #[test]
    fn relabelling_keeps_only_the_opus_blocks_in_order() {
        // Publisher's Opus 109, with one redundant block of another codec
        // (PCMU, 0) between two of Opus.
        let block = |pt, offset, payload: &[u8]| RedundantBlock {
            pt,
            timestamp_offset: offset,
            payload: payload.to_vec(),
        };
        let p = Payload::from(RedEncoder::encode(
            109,
            &[1, 2, 3],
            &[
                block(109, 1920, &[7]),
                block(0, 960, &[8, 8]),
                block(109, 960, &[4, 5]),
            ],
        ));
        let (_, out) = red_for_subscriber(&config(true), 109.into(), OPUS.into(), &p).unwrap();
        let expected = RedEncoder::encode(
            OPUS,
            &[1, 2, 3],
            &[block(OPUS, 1920, &[7]), block(OPUS, 960, &[4, 5])],
        );
        assert_eq!(&*out, &expected[..]);
    }

    #[test]
    fn subscribers_alike_share_one_copy() {
        let p = red(&[1, 2, 3], &[4, 5]);
        let now = Instant::now();
        let mut copies = RedCopies::default();
        let plain = config(false);
        let (_, a) = copies
            .for_subscriber(&plain, OPUS.into(), OPUS.into(), &p, now)
            .unwrap();
        let (_, b) = copies
            .for_subscriber(&plain, OPUS.into(), OPUS.into(), &p, now)
            .unwrap();
        assert!(std::ptr::eq(a.as_ptr(), b.as_ptr()), "made twice");
        // The next packet is made anew.
        copies.clear();
        let q = red(&[6, 6], &[1, 2, 3]);
        let (_, c) = copies
            .for_subscriber(&plain, OPUS.into(), OPUS.into(), &q, now)
            .unwrap();
        assert_eq!(&*c, &[6, 6]);
    }

    #[test]
    fn garbage_or_another_codec_is_dropped() {
        let sub = config(false);
        let garbage = Payload::from(vec![0x80 | OPUS, 0xff, 0xff, 0xff, 1]);
        assert!(red_for_subscriber(&sub, OPUS.into(), OPUS.into(), &garbage).is_none());
        // A RED packet whose primary is not Opus (PCMU).
        let pcmu = Payload::from(RedEncoder::encode(0, &[1], &[]));
        assert!(red_for_subscriber(&sub, OPUS.into(), OPUS.into(), &pcmu).is_none());
    }

    #[test]
    fn red_goes_first_in_audio_answers_only() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        let out = prefer_red(sdp);
        assert_eq!(
            out,
            sdp.replacen("SAVPF 111 63\r\n", "SAVPF 63 111\r\n", 1),
            "only the audio m-line with RED changes"
        );
        // Idempotent, and nothing to do without RED.
        assert_eq!(prefer_red(&out), out);
        let plain = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(prefer_red(plain), plain);
    }
}
