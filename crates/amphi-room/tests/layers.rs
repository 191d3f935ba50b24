//! The forwarding state machine of one subscriber's video track, end to
//! end and without I/O: a publisher's three simulcast encodings with three
//! temporal layers each go through the layer selector, the forwarder and the
//! VP8 picture numbering, while the target layer moves up, down, pauses and
//! resumes. What comes out must look like one continuous VP8 stream: no
//! sequence-number gaps or repeats, timestamps that never go back, picture
//! IDs without gaps, and every switch starting on a keyframe.

use std::time::{Duration, Instant};

use amphi_room::forwarder::{Forwarder, IncomingPacket, Verdict};
use amphi_room::keyframe::VideoCodec;
use amphi_room::layer::{Layer, LayerPacket, LayerSelector, Selection};
use amphi_room::vp8::{PictureNumbering, Vp8Info};

/// One simulcast encoding: its own SSRC, sequence numbers, timestamps and
/// picture IDs, as Chrome's encoders have.
struct Encoder {
    spatial: u8,
    ssrc: u32,
    seq: u64,
    ts: u32,
    pid: u16,
    tl0: u8,
}

struct Out {
    seq: u64,
    ts: u32,
    pid: u16,
    keyframe: bool,
    spatial: u8,
    temporal: u8,
}

/// A VP8 payload descriptor with 15-bit PictureID, TL0PICIDX and TID.
fn payload(pid: u16, tl0: u8, tid: u8, key: bool, start: bool) -> Vec<u8> {
    let mut p = vec![
        0x80 | if start { 0x10 } else { 0 },
        0xe0,
        0x80 | (pid >> 8) as u8,
        pid as u8,
        tl0,
        tid << 6,
    ];
    p.extend_from_slice(if key {
        &[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]
    } else {
        &[0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
    });
    p
}

struct Subscriber {
    selector: LayerSelector,
    forwarder: Forwarder,
    pictures: PictureNumbering,
    out: Vec<Out>,
    keyframe_requests: Vec<u8>,
}

impl Subscriber {
    fn new() -> Self {
        Subscriber {
            selector: LayerSelector::default(),
            forwarder: Forwarder::new(Some(VideoCodec::Vp8), 90_000),
            pictures: PictureNumbering::default(),
            out: Vec::new(),
            keyframe_requests: Vec::new(),
        }
    }

    /// What `Sfu::forward` does with one packet for one subscriber.
    fn packet(&mut self, e: &Encoder, tid: u8, key: bool, start: bool, at: Instant) {
        let bytes = payload(e.pid, e.tl0, tid, key && start, start);
        let info = Vp8Info::parse(&bytes).expect("valid VP8");
        let incoming = IncomingPacket {
            ssrc: e.ssrc,
            seq: e.seq,
            timestamp: e.ts,
            arrival: at,
            keyframe_start: info.keyframe_start,
        };
        let lp = LayerPacket {
            spatial: e.spatial,
            temporal: info.temporal,
            layer_sync: info.layer_sync,
            frame_start: info.frame_start,
            keyframe_start: info.keyframe_start,
        };
        let mut switched = false;
        match self.selector.select(lp) {
            Selection::Forward => {}
            Selection::Switch => {
                self.forwarder.restart();
                switched = true;
            }
            Selection::Skip => {
                self.forwarder.skip(incoming);
                self.pictures.drop_frame(&info);
                return;
            }
            Selection::Ignore => return,
            Selection::NeedKeyframe { spatial } => {
                self.keyframe_requests.push(spatial);
                return;
            }
        }
        let Verdict::Forward { seq, timestamp } = self.forwarder.forward(incoming) else {
            return;
        };
        let (pid, _) = self.pictures.forward(&info, switched);
        self.out.push(Out {
            seq,
            ts: timestamp,
            pid: pid.expect("picture id"),
            keyframe: info.keyframe_start,
            spatial: e.spatial,
            temporal: tid,
        });
    }
}

/// Runs `frames` frames (30 fps, L1T3 pattern 0-2-1-2, two packets per
/// frame) of all three encodings through `sub`. `keyframe_every` frames
/// are keyframes on every layer (as after PLIs).
fn run(
    sub: &mut Subscriber,
    encoders: &mut [Encoder],
    start: Instant,
    frame0: u64,
    frames: u64,
    keyframe_every: u64,
) {
    const PATTERN: [u8; 4] = [0, 2, 1, 2];
    for f in frame0..frame0 + frames {
        let at = start + Duration::from_millis(33 * f);
        let key = f % keyframe_every == 0;
        let tid = if key { 0 } else { PATTERN[(f % 4) as usize] };
        for e in encoders.iter_mut() {
            if tid == 0 {
                e.tl0 = e.tl0.wrapping_add(1);
            }
            for part in 0..2 {
                sub.packet(e, tid, key, part == 0, at);
                e.seq += 1;
            }
            e.ts = e.ts.wrapping_add(3_000);
            e.pid = (e.pid + 1) % 32_768;
        }
    }
}

fn encoders() -> Vec<Encoder> {
    // Unrelated bases per encoder, one close to a wrap.
    vec![
        Encoder {
            spatial: 0,
            ssrc: 11,
            seq: 65_000,
            ts: 4_294_000_000,
            pid: 32_760,
            tl0: 250,
        },
        Encoder {
            spatial: 1,
            ssrc: 22,
            seq: 100,
            ts: 12_345,
            pid: 500,
            tl0: 3,
        },
        Encoder {
            spatial: 2,
            ssrc: 33,
            seq: 30_000,
            ts: 2_000_000_000,
            pid: 9_000,
            tl0: 77,
        },
    ]
}

fn assert_continuous(out: &[Out]) {
    assert!(!out.is_empty());
    assert!(out[0].keyframe, "the stream starts on a keyframe");
    for w in out.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq + 1,
            "sequence numbers without gaps or repeats"
        );
        let dt = w[1].ts.wrapping_sub(w[0].ts);
        assert!(
            dt < 90_000 * 5,
            "timestamps never go back ({} -> {})",
            w[0].ts,
            w[1].ts
        );
        let dp = (w[1].pid + 32_768 - w[0].pid) % 32_768;
        assert!(
            dp <= 1,
            "picture IDs without gaps ({} -> {})",
            w[0].pid,
            w[1].pid
        );
        if w[1].spatial != w[0].spatial {
            assert!(w[1].keyframe, "a spatial switch starts on a keyframe");
            assert_eq!(dp, 1);
        }
    }
}

#[test]
fn switches_pauses_and_temporal_steps_keep_one_continuous_stream() {
    let t0 = Instant::now();
    let mut encs = encoders();
    let mut sub = Subscriber::new();
    sub.selector.set_target(Some(Layer::new(0, 2)));
    // Keyframes every 30 frames, as the keyframe requests would bring.
    run(&mut sub, &mut encs, t0, 0, 60, 30);
    assert!(sub.out.iter().all(|o| o.spatial == 0));
    let low = sub.out.len();

    // Up to the top layer at full frame rate, between two keyframes: the
    // low layer goes on until the top layer's next keyframe.
    run(&mut sub, &mut encs, t0, 60, 5, 30);
    sub.selector.set_target(Some(Layer::new(2, 2)));
    run(&mut sub, &mut encs, t0, 65, 55, 30);
    assert!(
        sub.keyframe_requests.contains(&2),
        "a keyframe of the target is asked for"
    );
    assert!(sub.out[low..].iter().any(|o| o.spatial == 2));
    assert!(sub.out.last().is_some_and(|o| o.spatial == 2));

    // Temporal step down: only base-layer frames of the top layer.
    sub.selector.set_target(Some(Layer::new(2, 0)));
    let before = sub.out.len();
    run(&mut sub, &mut encs, t0, 120, 40, 1_000);
    let base_only = &sub.out[before + 2..];
    assert!(base_only.iter().all(|o| o.temporal == 0 && o.spatial == 2));
    assert!(
        (15..=25).contains(&base_only.len()),
        "a quarter of the frames: {}",
        base_only.len()
    );

    // Pause, then resume on the middle layer.
    sub.selector.set_target(None);
    let paused_at = sub.out.len();
    run(&mut sub, &mut encs, t0, 160, 20, 1_000);
    assert_eq!(sub.out.len(), paused_at, "nothing while paused");
    sub.selector.set_target(Some(Layer::new(1, 2)));
    run(&mut sub, &mut encs, t0, 180, 60, 30);
    assert!(sub.out[paused_at].keyframe && sub.out[paused_at].spatial == 1);
    // Down to the low layer again.
    sub.selector.set_target(Some(Layer::new(0, 1)));
    run(&mut sub, &mut encs, t0, 240, 60, 30);
    assert_eq!(sub.out.last().map(|o| o.spatial), Some(0));

    assert_continuous(&sub.out);
    // Across the pause, the timestamps advanced by about the wall-clock gap
    // (20 frames + the wait for a keyframe), not by the encoders' offsets.
    let gap = sub.out[paused_at]
        .ts
        .wrapping_sub(sub.out[paused_at - 1].ts);
    assert!(
        (90_000 / 2..90_000 * 3).contains(&gap),
        "timestamp gap {gap} across a 1-2 s pause"
    );
}
