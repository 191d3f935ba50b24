//! Readiness signalling threaded through the component tree.
//!
//! Everything below [`Rtc`][crate::Rtc] forms a tree, and both events and new
//! timeouts bubble up from the leaves. To avoid re-walking a quiescent tree on
//! every `poll_output`, each path that takes `&mut` access to a sub-component
//! is handed an armed [`Wake`] guard, threaded down like `&mut` state.
//!
//! A [`Wake`] defaults to re-polling *everything*: left untouched it signals
//! both a pending event drain and a timeout recompute. A component narrows it
//! locally — [`Wake::no_events`] / [`Wake::no_timeout`] — when it knows less
//! changed. The guard folds its (possibly narrowed) signal into the owning
//! [`Readiness`] on drop.
//!
//! The direction is deliberate: the safe default is to re-poll, and narrowing
//! is an opt-in optimization owned by the component that performed the
//! mutation. A forgotten narrowing or an over-broad wake costs at most one redundant
//! poll; it can never drop output. No component names another's scope, and
//! `Rtc` holds no knowledge of which mutation affects what.
//!
//! The app-facing API wrappers ([`DirectApi`][crate::change::DirectApi],
//! [`SdpApi`][crate::change::SdpApi], [`Channel`][crate::channel::Channel],
//! [`Bwe`][crate::bwe::Bwe]) hold an [`RtcMut`] instead of `&mut Rtc`. It arms
//! the readiness on *mutable* deref only, so a `&mut self` method that mutates
//! re-polls the tree while a `&self` reader never does — and neither has to
//! remember to call anything.

use std::ops::{Deref, DerefMut};

use crate::Rtc;

/// A `&mut Rtc` handle that re-polls the tree when it is used mutably.
///
/// Change detection, à la a dirty-flag on mutable access: `deref` is a plain
/// read and never arms; `deref_mut` arms both halves (the safe default).
/// Because a `&self` method can only reach `deref` and a mutating `&mut self`
/// method reaches `deref_mut`, "mutation re-polls, reads don't" is enforced by
/// the borrow checker — a new method can't forget, and a read-only method
/// can't accidentally arm.
///
/// Deliberately has no `Drop`: the API wrappers are held in `let` bindings
/// across other `Rtc` use, and a destructor would extend their borrow to the
/// end of scope. Arming therefore happens eagerly on the mutable access.
///
/// When a mutation only affects one half of the re-poll — and especially when
/// that isn't known until the mutation is underway — take it through
/// [`RtcMut::mutate`] and narrow the returned [`Mutation`] guard.
pub(crate) struct RtcMut<'a> {
    rtc: &'a mut Rtc,
}

impl<'a> RtcMut<'a> {
    pub(crate) fn new(rtc: &'a mut Rtc) -> Self {
        RtcMut { rtc }
    }

    /// Begin a mutation whose re-poll can be narrowed *after the fact*.
    ///
    /// The returned [`Mutation`] derefs to `Rtc`, so mutate through it, then
    /// (optionally, conditionally) call [`Mutation::no_events`] /
    /// [`Mutation::no_timeout`]. It folds its own — per-operation, never shared
    /// — signal into the readiness when it drops.
    ///
    /// Plain `&mut *` (via [`DerefMut`]) is the shorthand for "arm both": it's
    /// what methods that don't narrow, or that return a `&mut` borrowed from
    /// the tree (which can't outlive a guard), use instead.
    pub(crate) fn mutate(&mut self) -> Mutation<'_> {
        Mutation {
            rtc: self.rtc,
            events: true,
            timeout: true,
        }
    }
}

impl<'a> RtcMut<'a> {
    /// Arms the timeout alone and hands out the tree, for parts whose changes
    /// show only through a timeout: a packet written to a send stream waits
    /// for one (`SendQueue::push`), and the stream's settings are read in one.
    ///
    /// Amphi patch: an SFU writes one packet at a time to each subscriber,
    /// and arming the events too made the next poll walk the whole event
    /// pipeline (ICE, DTLS, SCTP, the session's events) only to find the
    /// timeout.
    ///
    /// Amphi patch, too: what a send stream changes moves no deadline but
    /// the send queues', so the timeout is recomputed from those and the
    /// pacer alone (`Readiness::stream_written`).
    pub(crate) fn timeout_only(&mut self) -> &mut Rtc {
        self.rtc.readiness.stream_written();
        self.rtc
    }
}

impl Deref for RtcMut<'_> {
    type Target = Rtc;

    fn deref(&self) -> &Rtc {
        self.rtc
    }
}

impl DerefMut for RtcMut<'_> {
    fn deref_mut(&mut self) -> &mut Rtc {
        self.rtc.readiness.wake();
        self.rtc
    }
}

/// A single mutation in progress, obtained from [`RtcMut::mutate`].
///
/// Derefs to `Rtc` for the actual change. Armed for both halves by default;
/// narrow with [`Mutation::no_events`] / [`Mutation::no_timeout`] at any point
/// before it drops — including conditionally, once the mutation has revealed
/// which half it touched. Folds the (possibly narrowed) signal into the
/// readiness on drop.
///
/// The signal is private to this one guard, so narrowing here can never
/// interfere with another method call's decision regardless of call order —
/// the property a long-lived shared guard could not offer.
pub(crate) struct Mutation<'a> {
    rtc: &'a mut Rtc,
    events: bool,
    timeout: bool,
}

impl Mutation<'_> {
    /// Assert this mutation queued no event or transmit.
    pub(crate) fn no_events(&mut self) {
        self.events = false;
    }

    /// Assert this mutation moved no timer.
    pub(crate) fn no_timeout(&mut self) {
        self.timeout = false;
    }
}

impl Deref for Mutation<'_> {
    type Target = Rtc;

    fn deref(&self) -> &Rtc {
        self.rtc
    }
}

impl DerefMut for Mutation<'_> {
    fn deref_mut(&mut self) -> &mut Rtc {
        self.rtc
    }
}

impl Drop for Mutation<'_> {
    fn drop(&mut self) {
        let mut wake = self.rtc.readiness.wake();
        if !self.events {
            wake.no_events();
        }
        if !self.timeout {
            wake.no_timeout();
        }
    }
}

/// The accumulated re-poll signal owned by [`Rtc`][crate::Rtc].
///
/// `poll_output` reads it to decide whether to walk the event pipeline and
/// whether to recompute the next timeout, clearing each half once it has
/// proven that part of the tree quiescent.
#[derive(Debug)]
pub(crate) struct Readiness {
    events: bool,
    timeout: bool,
    /// Whether the timeout must be recomputed from every part, not only
    /// from the pacer and the send queues. See [`Readiness::written`].
    full_timeout: bool,
    /// See [`Readiness::stream_written`].
    queues_written: bool,
    /// Whether the whole event pipeline must be walked, not only the
    /// transmit end of it. See [`Readiness::written_sendable`].
    full_events: bool,
}

impl Readiness {
    /// A fresh instance must poll the whole tree once.
    pub(crate) fn armed() -> Self {
        Readiness {
            events: true,
            timeout: true,
            full_timeout: true,
            queues_written: true,
            full_events: true,
        }
    }

    pub(crate) fn wants_events(&self) -> bool {
        self.events
    }

    pub(crate) fn wants_timeout(&self) -> bool {
        self.timeout
    }

    pub(crate) fn wants_full_events(&self) -> bool {
        self.full_events
    }

    pub(crate) fn clear_events(&mut self) {
        self.events = false;
        self.full_events = false;
    }

    pub(crate) fn wants_full_timeout(&self) -> bool {
        self.full_timeout
    }

    pub(crate) fn clear_timeout(&mut self) {
        self.timeout = false;
        self.full_timeout = false;
        self.queues_written = false;
    }

    /// Arms a timeout recompute for a send stream handed out to the
    /// application: a packet written to it moves no deadline but its
    /// queue's (it waits for a timeout, `SendQueue::push`).
    ///
    /// Amphi patch, as [`Readiness::written_sendable`]. See
    /// `Session::poll_written_timeout`.
    pub(crate) fn stream_written(&mut self) {
        self.timeout = true;
        self.queues_written = true;
    }

    /// Arms the transmit end of the event pipeline and a timeout recompute
    /// after a timeout that only gave the written packets their time
    /// (`Session::handle_written`): they are sendable, every queue is
    /// stamped, only the pacer's deadline moved, and no other part has
    /// anything new to say (the last walk drained them).
    ///
    /// Amphi patch. See `Session::poll_written_timeout`.
    pub(crate) fn written_sendable(&mut self) {
        self.events = true;
        self.timeout = true;
    }

    /// Whether a send stream was handed out since the last recompute, so a
    /// queue may hold a packet waiting for a timeout.
    pub(crate) fn queues_written(&self) -> bool {
        self.queues_written
    }

    /// Hand out an armed guard for a mutable descent into the tree.
    pub(crate) fn wake(&mut self) -> Wake<'_> {
        Wake {
            readiness: self,
            events: true,
            timeout: true,
        }
    }
}

/// An armed guard threaded into a component's mutating methods.
///
/// Narrowed locally by the component and folded into [`Readiness`] on drop.
/// See the [module docs][self].
///
/// Dropping it immediately (e.g. `self.rtc.readiness.wake();`) is the
/// conservative default: it re-polls everything. Narrow first to do less.
pub(crate) struct Wake<'a> {
    readiness: &'a mut Readiness,
    events: bool,
    timeout: bool,
}

impl Wake<'_> {
    /// Assert this path queued no event or transmit, so the event pipeline
    /// need not be walked on its behalf.
    pub(crate) fn no_events(&mut self) {
        self.events = false;
    }

    /// Assert this path did not move any timer, so the next timeout need not
    /// be recomputed on its behalf.
    pub(crate) fn no_timeout(&mut self) {
        self.timeout = false;
    }
}

impl Drop for Wake<'_> {
    fn drop(&mut self) {
        self.readiness.events |= self.events;
        self.readiness.full_events |= self.events;
        self.readiness.timeout |= self.timeout;
        self.readiness.full_timeout |= self.timeout;
    }
}

#[cfg(test)]
impl Readiness {
    pub(crate) fn idle() -> Self {
        Self {
            events: false,
            timeout: false,
            full_timeout: false,
            queues_written: false,
            full_events: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::bwe::Bitrate;
    use crate::crypto::dtls::{KeyingMaterial, SrtpProfile};
    use crate::media::MediaKind;
    use crate::{Input, Output};
    use std::time::Instant;

    fn idle_rtc() -> Rtc {
        idle_rtc_with(Rtc::builder())
    }

    fn idle_rtc_with(config: crate::RtcConfig) -> Rtc {
        let now = Instant::now();
        let mut rtc = config.enable_bwe(Some(Bitrate::kbps(300))).build(now);
        let profile = SrtpProfile::AEAD_AES_128_GCM;
        let mat = KeyingMaterial::new(&vec![0; profile.keying_material_len()]);
        rtc.session
            .set_keying_material(mat, crate::crypto::test_default_provider(), profile, true);
        rtc.direct_api()
            .declare_media("vid".into(), MediaKind::Video);
        rtc.direct_api()
            .declare_stream_tx(42.into(), None, "vid".into(), None);
        rtc.handle_input(Input::Timeout(now)).unwrap();
        while !matches!(rtc.poll_output().unwrap(), Output::Timeout(_)) {}
        assert!(!rtc.readiness.wants_events());
        assert!(!rtc.readiness.wants_timeout());
        rtc
    }

    #[test]
    fn readiness_bwe_set_bitrate_only_wakes_timeout() {
        let mut rtc = idle_rtc();
        rtc.bwe().set_bitrate(Bitrate::kbps(100), Bitrate::mbps(2));
        assert!(!rtc.readiness.wants_events());
        assert!(rtc.readiness.wants_timeout());
        assert!(
            rtc.session.poll_event().is_none(),
            "no hidden event behind the narrowed flag"
        );
        let expected = rtc.poll_timeout();
        assert!(matches!(rtc.poll_output().unwrap(), Output::Timeout(at) if at == expected));
    }

    #[test]
    fn readiness_bwe_reset_only_wakes_timeout() {
        let mut rtc = idle_rtc();
        rtc.bwe().reset(Bitrate::kbps(900));
        assert!(!rtc.readiness.wants_events());
        assert!(rtc.readiness.wants_timeout());
        assert!(
            rtc.session.poll_event().is_none(),
            "reset produces estimates on a later timeout"
        );
        let expected = rtc.poll_timeout();
        assert!(matches!(rtc.poll_output().unwrap(), Output::Timeout(at) if at == expected));
    }

    #[test]
    fn readiness_outgoing_app_feedback_only_wakes_events() {
        let mut rtc = idle_rtc();
        let before = rtc.session.poll_timeout();
        rtc.direct_api()
            .send_app_specific_feedback(42.into(), 43.into(), vec![1, 2, 3, 4]);
        assert!(rtc.readiness.wants_events());
        assert!(!rtc.readiness.wants_timeout());
        assert_eq!(rtc.session.poll_timeout(), before);
        assert!(
            rtc.session.poll_datagram(rtc.last_now).is_some(),
            "queued feedback must be sendable without a timeout"
        );
    }

    #[test]
    fn readiness_api_narrowing_preserves_other_mutations() {
        for feedback_first in [false, true] {
            let mut rtc = idle_rtc();
            if feedback_first {
                rtc.direct_api()
                    .send_app_specific_feedback(42.into(), 43.into(), vec![1, 2, 3, 4]);
                rtc.bwe().reset(Bitrate::kbps(900));
            } else {
                rtc.bwe().reset(Bitrate::kbps(900));
                rtc.direct_api()
                    .send_app_specific_feedback(42.into(), 43.into(), vec![1, 2, 3, 4]);
            }
            assert!(rtc.readiness.wants_events());
            assert!(rtc.readiness.wants_timeout());
        }
    }

    // Amphi patch 4 (AMPHI.md): a timeout at which nothing but written
    // packets is due only makes those sendable.

    fn write(rtc: &mut Rtc, ssrc: u32, seq: u64, now: Instant) {
        let pt = rtc.session.codec_config.params()[0].pt();
        let packet = crate::rtp::RtpWrite::new(pt, seq.into(), 0, now, vec![0_u8; 1000]);
        rtc.direct_api()
            .stream_tx(&ssrc.into())
            .expect("a declared stream")
            .write_rtp(packet);
    }

    /// Whether the written 1,000-byte packet is among what the session would
    /// send now (reports come first, and are smaller).
    fn sends_the_packet(rtc: &mut Rtc, now: Instant) -> bool {
        std::iter::from_fn(|| rtc.session.poll_datagram(now)).any(|d| d.len() > 1000)
    }

    /// Polls until the timeout, as an application does after a change.
    fn poll_to_timeout(rtc: &mut Rtc) -> Instant {
        loop {
            if let Output::Timeout(at) = rtc.poll_output().unwrap() {
                return at;
            }
        }
    }

    /// A nominated pair, as ICE would give, so `poll_output` transmits.
    fn give_send_addr(rtc: &mut Rtc) {
        rtc.send_addr = Some(crate::SendAddr {
            proto: crate::net::Protocol::Udp,
            source: "127.0.0.1:1000".parse().unwrap(),
            destination: "127.0.0.1:2000".parse().unwrap(),
        });
    }

    /// An idle connection past its first timeout (which schedules the
    /// reports), and the time 1 ms after that.
    fn settled_rtc() -> (Rtc, Instant) {
        settled_rtc_with(Rtc::builder())
    }

    fn settled_rtc_with(config: crate::RtcConfig) -> (Rtc, Instant) {
        let mut rtc = idle_rtc_with(config);
        let now = rtc.last_now + std::time::Duration::from_millis(1);
        rtc.handle_input(Input::Timeout(now)).unwrap();
        poll_to_timeout(&mut rtc);
        (rtc, now + std::time::Duration::from_millis(1))
    }

    #[test]
    fn a_written_packet_needs_only_a_written_only_timeout() {
        let (mut rtc, now) = settled_rtc();
        write(&mut rtc, 42, 1, now);
        assert!(
            poll_to_timeout(&mut rtc) <= now,
            "the packet waits for a timeout"
        );
        assert!(now < rtc.written_only_until, "and nothing else is due");

        rtc.handle_input(Input::Timeout(now)).unwrap();
        assert_eq!(rtc.written_only_timeouts, 1);
        assert!(sends_the_packet(&mut rtc, now));
        // Sent, nothing is left to wait for: the next timeout is the soonest
        // of the others, unchanged by the shortcut.
        let others = rtc.written_only_until;
        assert!(poll_to_timeout(&mut rtc) > now);
        assert!(rtc.written_only_until >= others);
    }

    #[test]
    fn readiness_a_send_stream_only_wakes_timeout() {
        let (mut rtc, now) = settled_rtc();
        write(&mut rtc, 42, 1, now);
        assert!(
            !rtc.readiness.wants_events(),
            "nothing to send before a timeout"
        );
        assert!(rtc.readiness.wants_timeout());
        assert!(!sends_the_packet(&mut rtc, now));
        rtc.direct_api().stream_tx_by_mid("vid".into(), None);
        assert!(!rtc.readiness.wants_events());
    }

    #[test]
    fn a_due_deadline_takes_the_full_timeout() {
        let (mut rtc, now) = settled_rtc();
        write(&mut rtc, 42, 1, now);
        poll_to_timeout(&mut rtc);
        let due = rtc.written_only_until;
        assert!(due > now);

        rtc.handle_input(Input::Timeout(due)).unwrap();
        assert_eq!(rtc.written_only_timeouts, 0);
        assert!(sends_the_packet(&mut rtc, due));
    }

    #[test]
    fn a_change_after_the_last_poll_takes_the_full_timeout() {
        let (mut rtc, now) = settled_rtc();
        write(&mut rtc, 42, 1, now);
        poll_to_timeout(&mut rtc);
        // The deadlines computed at the poll may no longer hold.
        rtc.bwe().reset(Bitrate::kbps(900));

        rtc.handle_input(Input::Timeout(now)).unwrap();
        assert_eq!(rtc.written_only_timeouts, 0);
        assert!(sends_the_packet(&mut rtc, now));
    }

    #[test]
    fn a_new_stream_and_probing_take_the_full_timeout() {
        let (mut rtc, mut now) = settled_rtc();
        rtc.direct_api()
            .declare_stream_tx(43.into(), None, "vid".into(), Some("h".into()));
        // The first timeout of a stream reads its media.
        write(&mut rtc, 43, 1, now);
        poll_to_timeout(&mut rtc);
        rtc.handle_input(Input::Timeout(now)).unwrap();
        assert_eq!(rtc.written_only_timeouts, 0);
        assert!(sends_the_packet(&mut rtc, now));
        // Which also schedules its reports: the first is due at once.
        now += std::time::Duration::from_millis(1);
        rtc.handle_input(Input::Timeout(now)).unwrap();
        poll_to_timeout(&mut rtc);
        assert_eq!(rtc.written_only_timeouts, 0);

        now += std::time::Duration::from_millis(1);
        write(&mut rtc, 43, 2, now);
        poll_to_timeout(&mut rtc);
        rtc.handle_input(Input::Timeout(now)).unwrap();
        assert_eq!(
            rtc.written_only_timeouts, 1,
            "then written packets only need the shortcut"
        );
        assert!(sends_the_packet(&mut rtc, now));

        // A probe plans padding across every queue.
        let probe = crate::bwe_::ProbeClusterConfig::new(
            1.into(),
            Bitrate::mbps(1),
            crate::bwe_::ProbeKind::Initial,
        );
        rtc.session.pacer_mut().start_probe(probe);
        now += std::time::Duration::from_millis(1);
        write(&mut rtc, 43, 3, now);
        poll_to_timeout(&mut rtc);
        assert!(!rtc.session.handle_written(now));
    }

    // Amphi patch 7 (AMPHI.md): after writes, a written-only timeout and
    // the sends after it, the timeout is recomputed from the pacer and the
    // send queues alone, and comes out as a full recompute would.

    /// The light recompute's answer, checked against a full one.
    fn assert_as_full_recompute(rtc: &mut Rtc) {
        let (timeout, others) = (rtc.cached_timeout, rtc.written_only_until);
        let full_polls = rtc.full_timeout_polls;
        rtc.readiness.wake().no_events();
        assert_eq!(rtc.poll_timeout(), timeout, "the timeout");
        assert_eq!(rtc.written_only_until, others, "the other deadlines");
        rtc.full_timeout_polls = full_polls;
    }

    #[test]
    fn writes_and_sends_recompute_only_the_pacer_and_the_queues() {
        // With room for the packets below (about 2.7 Mbit/s, in bursts of
        // up to 8 Mbit/s), and with the pacer spreading the bursts.
        for estimate in [Bitrate::mbps(4), Bitrate::kbps(1500)] {
            written_recomputes_as_full_ones(estimate);
        }
    }

    fn written_recomputes_as_full_ones(estimate: Bitrate) {
        let (mut rtc, mut now) = settled_rtc();
        // On a media of its own: a stream without a rid answers for every
        // stream of its media (`MidRid::special_equals`).
        rtc.direct_api()
            .declare_media("vid2".into(), MediaKind::Video);
        rtc.direct_api()
            .declare_stream_tx(43.into(), None, "vid2".into(), None);
        rtc.bwe().reset(estimate);
        // Sent through `poll_output`, as an application does, so the walks
        // after written-only timeouts are the transmit-only ones.
        give_send_addr(&mut rtc);
        rtc.handle_input(Input::Timeout(now)).unwrap();
        poll_to_timeout(&mut rtc);
        let full_at_start = rtc.full_timeout_polls;
        let mut polls = 0;
        let mut sent = 0;
        for seq in 1..=300_u64 {
            // Bursts of one to three packets on two streams, as an SFU
            // forwards them, every 3 ms: enough to meet the reports' and the
            // estimator's deadlines, and the pacer's.
            for n in 0..=(seq % 3) {
                write(&mut rtc, if n == 1 { 43 } else { 42 }, seq * 3 + n, now);
            }
            loop {
                let at = loop {
                    match rtc.poll_output().unwrap() {
                        Output::Transmit(t) => sent += usize::from(t.contents.len() > 1000),
                        Output::Event(_) => {}
                        Output::Timeout(at) => break at,
                    }
                };
                polls += 1;
                // At every step for the first half; then at every seventh:
                // a full recompute refreshes what the written ones reuse,
                // and staleness must also show over several of them.
                if seq <= 150 || seq % 7 == 0 {
                    assert_as_full_recompute(&mut rtc);
                }
                if at > now {
                    break;
                }
                rtc.handle_input(Input::Timeout(now)).unwrap();
            }
            now += std::time::Duration::from_millis(3);
        }
        eprintln!(
            "EST {estimate} sent {sent} wo {} full {} polls {polls}",
            rtc.written_only_timeouts,
            rtc.full_timeout_polls - full_at_start
        );
        // 600 written, paced at the estimate.
        let expected = if estimate > Bitrate::mbps(2) {
            500
        } else {
            180
        };
        assert!(sent >= expected, "the packets went out: {sent}");
        assert!(rtc.written_only_timeouts > 200);
        let full = rtc.full_timeout_polls - full_at_start;
        assert!(
            full * 4 < polls,
            "{full} of {polls} recomputes were full ones"
        );
    }

    #[test]
    fn any_other_change_takes_the_full_recompute() {
        let (mut rtc, now) = settled_rtc();
        write(&mut rtc, 42, 1, now);
        let full = rtc.full_timeout_polls;
        poll_to_timeout(&mut rtc);
        assert_eq!(rtc.full_timeout_polls, full, "a write");
        rtc.handle_input(Input::Timeout(now)).unwrap();
        assert_eq!(rtc.written_only_timeouts, 1);
        poll_to_timeout(&mut rtc);
        assert_eq!(rtc.full_timeout_polls, full, "a written-only timeout");

        write(&mut rtc, 42, 2, now);
        rtc.bwe().reset(Bitrate::kbps(900));
        poll_to_timeout(&mut rtc);
        assert_eq!(
            rtc.full_timeout_polls,
            full + 1,
            "a write and another change"
        );
        let later = now + std::time::Duration::from_millis(1);
        rtc.handle_input(Input::Timeout(rtc.written_only_until.max(later)))
            .unwrap();
        poll_to_timeout(&mut rtc);
        assert_eq!(rtc.full_timeout_polls, full + 2, "a full timeout");
    }

    #[test]
    fn a_written_only_timeout_walks_only_the_transmit_end() {
        let (mut rtc, now) = settled_rtc();
        give_send_addr(&mut rtc);
        poll_to_timeout(&mut rtc);
        write(&mut rtc, 42, 1, now);
        poll_to_timeout(&mut rtc);
        rtc.handle_input(Input::Timeout(now)).unwrap();
        assert_eq!(rtc.written_only_timeouts, 1);
        assert!(rtc.readiness.wants_events());
        assert!(!rtc.readiness.wants_full_events());

        let Output::Transmit(t) = rtc.poll_output().unwrap() else {
            panic!("the written packet goes out first");
        };
        assert!(t.contents.len() > 1000);
        assert!(poll_to_timeout(&mut rtc) > now);
        assert!(!rtc.readiness.wants_events());
        // Nothing was left behind for a full walk to find.
        assert!(rtc.session.poll_event().is_none());
        assert!(rtc.session.poll_datagram(now).is_none());
    }

    #[test]
    fn raw_packet_capture_keeps_the_full_timeout_and_walk() {
        let (mut rtc, now) = settled_rtc_with(Rtc::builder().enable_raw_packets(true));
        give_send_addr(&mut rtc);
        poll_to_timeout(&mut rtc);
        write(&mut rtc, 42, 1, now);
        poll_to_timeout(&mut rtc);
        rtc.handle_input(Input::Timeout(now)).unwrap();
        assert_eq!(rtc.written_only_timeouts, 0);
        let mut sent = false;
        let mut captured = false;
        loop {
            match rtc.poll_output().unwrap() {
                Output::Transmit(t) => sent |= t.contents.len() > 1000,
                Output::Event(crate::Event::RawPacket(_)) => captured |= sent,
                Output::Event(_) => {}
                Output::Timeout(_) => break,
            }
        }
        assert!(sent && captured, "the packet and its capture");
    }

    #[test]
    fn written_arming_is_widened_by_any_other() {
        type Arm = fn(&mut Readiness);
        let written: [Arm; 2] = [Readiness::stream_written, Readiness::written_sendable];
        for arm in written {
            for written_first in [false, true] {
                let mut readiness = Readiness::idle();
                if written_first {
                    arm(&mut readiness);
                }
                drop(readiness.wake());
                if !written_first {
                    arm(&mut readiness);
                }
                assert!(readiness.wants_full_events());
                assert!(readiness.wants_full_timeout());
            }
            let mut readiness = Readiness::idle();
            arm(&mut readiness);
            assert!(readiness.wants_timeout());
            assert!(!readiness.wants_full_events());
            assert!(!readiness.wants_full_timeout());
            readiness.clear_events();
            readiness.clear_timeout();
            assert!(!readiness.queues_written());
        }
    }

    #[test]
    fn narrowing_preserves_other_operations() {
        for events in [false, true] {
            for timeout in [false, true] {
                let mut readiness = Readiness {
                    events,
                    timeout,
                    full_timeout: timeout,
                    queues_written: timeout,
                    full_events: events,
                };
                {
                    let mut wake = readiness.wake();
                    wake.no_events();
                    wake.no_timeout();
                }
                assert_eq!(readiness.wants_events(), events);
                assert_eq!(readiness.wants_timeout(), timeout);
                assert_eq!(readiness.wants_full_timeout(), timeout);
                assert_eq!(readiness.wants_full_events(), events);
            }
        }
    }
}
