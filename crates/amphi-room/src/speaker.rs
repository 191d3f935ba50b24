//! Who is speaking: active speakers and the dominant speaker of each room,
//! from the audio levels publishers put in their RTP packets (RFC 6464).
//!
//! Sans-IO like the rest of the engine: the detector owns no thread or
//! clock. It is fed one observation per audio packet
//! ([`SpeakerDetector::observe`]) and the time
//! ([`SpeakerDetector::handle_timeout`] when
//! [`SpeakerDetector::poll_timeout`] falls due), and is read back with
//! [`SpeakerDetector::speakers`].
//!
//! How it avoids flicker (the ideas of Jitsi's dominant speaker
//! identification and LiveKit's audio level observer, in our own code):
//! - Packets are judged in windows (one per evaluation, `interval`): a window
//!   counts as voice when enough of its packets are loud enough, so a single
//!   loud packet is noise, not speech.
//! - Each participant's level is an exponential moving average of the
//!   windows' levels, so it rises and falls over about `smoothing`.
//! - Someone becomes an active speaker after `min_speech` of voice (a cough
//!   is shorter) and stays one through pauses shorter than `silence`.
//! - The dominant speaker changes only when another active speaker has been
//!   louder by `switch_margin` for `switch_after`, or when the dominant one
//!   stops speaking. The others are listed loudest first, and two of them
//!   swap places only when the difference exceeds `switch_margin` too.
//!
//! What counts at all is the caller's business: the engine feeds only
//! microphones that it forwards and that are not muted, and calls
//! [`SpeakerDetector::remove`] when a participant is held back, so a
//! silenced source never shows up as speaking.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Tuning of the detector. The defaults suit speech from browsers (Opus,
/// 20 ms packets, levels from the WebRTC audio pipeline).
#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    /// How often the detector evaluates; also the length of a window.
    pub interval: Duration,
    /// A packet is voice when its level is at or above this, in -dBov
    /// (0 is the loudest, 127 silence): 50 means -50 dBov or louder.
    pub active_level: u8,
    /// Share of a window's packets that must be voice for the window to
    /// count as speech.
    pub min_voiced_share: f32,
    /// Time constant of the moving average of a participant's level.
    pub smoothing: Duration,
    /// Voice needed before someone counts as an active speaker.
    pub min_speech: Duration,
    /// Silence after which an active speaker is no longer one.
    pub silence: Duration,
    /// How long another speaker must be louder before taking over as the
    /// dominant speaker.
    pub switch_after: Duration,
    /// By how much (on the 0..1 level scale) a speaker must be louder to
    /// take over, or to move ahead of another in the list.
    pub switch_margin: f32,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        SpeakerConfig {
            interval: Duration::from_millis(250),
            active_level: 50,
            min_voiced_share: 0.3,
            smoothing: Duration::from_millis(400),
            min_speech: Duration::from_millis(400),
            silence: Duration::from_millis(1200),
            switch_after: Duration::from_millis(1000),
            switch_margin: 0.05,
        }
    }
}

/// One active speaker: who, and how loud (0.0 silent .. 1.0 full scale),
/// smoothed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speaker<P> {
    pub participant: P,
    pub level: f32,
}

/// Levels in -dBov below this count as nothing on the 0..1 scale: quieter
/// than this is background noise in any room.
const LEVEL_FLOOR_DBOV: f32 = 70.0;

/// Maps an RFC 6464 level (-dBov, 0..=127) onto 0.0..=1.0, linear in dB:
/// 0 dBov is 1.0, -35 dBov 0.5, -70 dBov and quieter 0.0. Linear in dB
/// because that is how loudness is perceived, and it keeps differences
/// between speakers meaningful for the margins above.
pub fn level_from_dbov(dbov: u8) -> f32 {
    ((LEVEL_FLOOR_DBOV - f32::from(dbov.min(127))) / LEVEL_FLOOR_DBOV).clamp(0.0, 1.0)
}

/// What the detector knows about one participant's microphone.
#[derive(Debug)]
struct Voice<R> {
    room: R,
    // The current window.
    packets: u32,
    voiced: u32,
    voiced_level_sum: f32,
    // Across windows.
    /// Smoothed level, 0..1.
    level: f32,
    /// Voice heard since the last long silence.
    voiced_time: Duration,
    last_voiced: Option<Instant>,
    last_packet: Instant,
    speaking: bool,
}

impl<R> Voice<R> {
    fn new(room: R, now: Instant) -> Self {
        Voice {
            room,
            packets: 0,
            voiced: 0,
            voiced_level_sum: 0.0,
            level: 0.0,
            voiced_time: Duration::ZERO,
            last_voiced: None,
            last_packet: now,
            speaking: false,
        }
    }

    /// Closes the current window (`window` long) at `now`.
    fn evaluate(&mut self, config: &SpeakerConfig, window: Duration, now: Instant) {
        let voiced_window = self.packets > 0
            && self.voiced as f32 >= config.min_voiced_share * self.packets as f32
            && self.voiced > 0;
        let target = if voiced_window {
            self.voiced_level_sum / self.voiced as f32
        } else {
            0.0
        };
        // Exponential smoothing that does not depend on how regular the
        // evaluations are: the weight of the new window grows with its length.
        let tau = config.smoothing.as_secs_f32().max(f32::EPSILON);
        let alpha = 1.0 - (-window.as_secs_f32() / tau).exp();
        self.level += (target - self.level) * alpha;
        if voiced_window {
            // The voiced share of the window, not all of it: a 200 ms cough
            // that straddles two windows adds 200 ms, not two windows.
            self.voiced_time += window.mul_f32(self.voiced as f32 / self.packets as f32);
            self.last_voiced = Some(now);
        } else if self
            .last_voiced
            .is_none_or(|t| now.saturating_duration_since(t) >= config.silence)
        {
            self.voiced_time = Duration::ZERO;
            self.speaking = false;
        }
        if self.voiced_time >= config.min_speech {
            self.speaking = true;
        }
        self.packets = 0;
        self.voiced = 0;
        self.voiced_level_sum = 0.0;
    }
}

/// The speakers of one room.
#[derive(Debug)]
struct RoomSpeakers<P> {
    /// Participants with a [`Voice`] in this room.
    members: Vec<P>,
    dominant: Option<P>,
    /// Someone louder than the dominant speaker, since when.
    challenger: Option<(P, Instant)>,
    /// Active speakers, the dominant one first, then loudest first.
    list: Vec<Speaker<P>>,
}

impl<P> Default for RoomSpeakers<P> {
    fn default() -> Self {
        RoomSpeakers {
            members: Vec::new(),
            dominant: None,
            challenger: None,
            list: Vec::new(),
        }
    }
}

/// Active and dominant speakers of many rooms. `R` names a room (or any
/// scope whose levels must not mix with another's, such as a breakout
/// group), `P` a participant.
#[derive(Debug)]
pub struct SpeakerDetector<R, P> {
    config: SpeakerConfig,
    voices: HashMap<P, Voice<R>>,
    rooms: HashMap<R, RoomSpeakers<P>>,
    last_evaluation: Option<Instant>,
    next_evaluation: Option<Instant>,
}

impl<R, P> SpeakerDetector<R, P>
where
    R: Clone + Eq + Hash,
    P: Copy + Eq + Hash + Ord,
{
    pub fn new(config: SpeakerConfig) -> Self {
        SpeakerDetector {
            config,
            voices: HashMap::new(),
            rooms: HashMap::new(),
            last_evaluation: None,
            next_evaluation: None,
        }
    }

    pub fn config(&self) -> &SpeakerConfig {
        &self.config
    }

    /// One audio packet of `participant`'s microphone in `room`: its level
    /// in -dBov (0..=127) and, if the sender set it, its voice activity
    /// flag. A participant observed in another room than before (a move
    /// between breakout groups) starts afresh there.
    pub fn observe(
        &mut self,
        room: &R,
        participant: P,
        dbov: u8,
        voice_activity: Option<bool>,
        now: Instant,
    ) {
        let moved = self
            .voices
            .get(&participant)
            .is_some_and(|v| v.room != *room);
        if moved {
            self.remove(participant);
        }
        let voice = match self.voices.get_mut(&participant) {
            Some(v) => v,
            None => {
                self.rooms
                    .entry(room.clone())
                    .or_default()
                    .members
                    .push(participant);
                self.voices
                    .entry(participant)
                    .or_insert_with(|| Voice::new(room.clone(), now))
            }
        };
        voice.packets += 1;
        voice.last_packet = voice.last_packet.max(now);
        // The sender's own voice activity detection, when it tells, has the
        // last word against a loud noise; it cannot make silence speech.
        let loud = dbov <= self.config.active_level;
        if loud && voice_activity != Some(false) {
            voice.voiced += 1;
            voice.voiced_level_sum += level_from_dbov(dbov);
        }
        self.next_evaluation
            .get_or_insert(now + self.config.interval);
    }

    /// Forgets `participant` at once: they left, moved, muted, or are held
    /// back. They disappear from the lists at the next evaluation.
    pub fn remove(&mut self, participant: P) {
        let Some(voice) = self.voices.remove(&participant) else {
            return;
        };
        if let Some(room) = self.rooms.get_mut(&voice.room) {
            room.members.retain(|p| *p != participant);
        }
    }

    /// Participants the detector follows, and their rooms.
    pub fn tracked(&self) -> impl Iterator<Item = (P, &R)> + '_ {
        self.voices.iter().map(|(p, v)| (*p, &v.room))
    }

    /// When to call [`Self::handle_timeout`] next; `None` while there is
    /// nothing to follow.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_evaluation
    }

    /// Evaluates every room if it is time to.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_evaluation.is_none_or(|t| now < t) {
            return;
        }
        self.evaluate(now);
    }

    /// Closes the current window of every participant and updates every
    /// room's speakers.
    fn evaluate(&mut self, now: Instant) {
        let window = self
            .last_evaluation
            .map_or(self.config.interval, |t| now.saturating_duration_since(t))
            // After a long gap (no packets anywhere) the window is not a
            // meaningful length; one interval keeps the smoothing sane.
            .min(self.config.interval * 4);
        self.last_evaluation = Some(now);

        let mut idle = Vec::new();
        for (p, voice) in &mut self.voices {
            voice.evaluate(&self.config, window, now);
            // Nothing left to say about someone silent and not sending.
            if !voice.speaking
                && now.saturating_duration_since(voice.last_packet) >= self.config.silence
            {
                idle.push(*p);
            }
        }
        for p in idle {
            self.remove(p);
        }

        let config = &self.config;
        let voices = &self.voices;
        for room in self.rooms.values_mut() {
            room.update(config, voices, now);
        }
        self.rooms
            .retain(|_, r| !r.members.is_empty() || !r.list.is_empty());
        self.next_evaluation = if self.voices.is_empty() && self.rooms.is_empty() {
            None
        } else {
            Some(now + self.config.interval)
        };
    }

    /// Active speakers of `room`: the dominant speaker first, then the
    /// others, loudest first. Empty when nobody speaks.
    pub fn speakers(&self, room: &R) -> &[Speaker<P>] {
        self.rooms.get(room).map_or(&[], |r| r.list.as_slice())
    }

    /// The dominant speaker of `room`.
    pub fn dominant(&self, room: &R) -> Option<P> {
        self.rooms.get(room).and_then(|r| r.dominant)
    }

    /// Rooms that have speakers or someone to follow.
    pub fn rooms(&self) -> impl Iterator<Item = &R> + '_ {
        self.rooms.keys()
    }
}

impl<P: Copy + Eq + Hash + Ord> RoomSpeakers<P> {
    fn update<R>(&mut self, config: &SpeakerConfig, voices: &HashMap<P, Voice<R>>, now: Instant) {
        let level = |p: &P| voices.get(p).filter(|v| v.speaking).map(|v| v.level);
        let speaking: Vec<(P, f32)> = self
            .members
            .iter()
            .filter_map(|p| level(p).map(|l| (*p, l)))
            .collect();

        // The dominant speaker.
        if self.dominant.is_some_and(|d| level(&d).is_none()) {
            self.dominant = None;
            self.challenger = None;
        }
        // Loudest; on a tie the lower id, so that the result does not depend
        // on hash order.
        let loudest = speaking
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        match (self.dominant, loudest) {
            (None, best) => {
                self.dominant = best.map(|(p, _)| p);
                self.challenger = None;
            }
            (Some(d), Some((c, c_level)))
                if c != d && c_level > level(&d).unwrap_or(0.0) + config.switch_margin =>
            {
                match self.challenger {
                    Some((who, since)) if who == c => {
                        if now.saturating_duration_since(since) >= config.switch_after {
                            self.dominant = Some(c);
                            self.challenger = None;
                        }
                    }
                    _ => self.challenger = Some((c, now)),
                }
            }
            (Some(_), _) => self.challenger = None,
        }

        // The others keep their places unless one is clearly louder than
        // the one before it; newcomers start at the end and move up.
        let mut order: Vec<(P, f32)> = self
            .list
            .iter()
            .filter_map(|s| level(&s.participant).map(|l| (s.participant, l)))
            .collect();
        let mut newcomers: Vec<(P, f32)> = speaking
            .iter()
            .copied()
            .filter(|(p, _)| !order.iter().any(|(o, _)| o == p))
            .collect();
        newcomers.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        order.extend(newcomers);
        order.retain(|(p, _)| Some(*p) != self.dominant);
        // Bubble sort with a margin: it only ever swaps neighbours whose
        // levels differ by more than the margin, so close levels never
        // reorder (a comparison sort cannot take such a non-transitive
        // order). The lists are a handful of people.
        let mut swapped = true;
        while swapped {
            swapped = false;
            for i in 1..order.len() {
                if order[i].1 > order[i - 1].1 + config.switch_margin {
                    order.swap(i - 1, i);
                    swapped = true;
                }
            }
        }
        self.list.clear();
        if let Some(d) = self.dominant
            && let Some(l) = level(&d)
        {
            self.list.push(Speaker {
                participant: d,
                level: l,
            });
        }
        self.list.extend(
            order
                .into_iter()
                .map(|(participant, level)| Speaker { participant, level }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Detector = SpeakerDetector<&'static str, u32>;

    /// A packet every 20 ms (Opus) from each `(participant, dbov)` in
    /// `room`, for `duration`, evaluating whenever due; returns the time
    /// at the end.
    fn talk(
        d: &mut Detector,
        room: &'static str,
        who: &[(u32, u8)],
        start: Instant,
        duration: Duration,
    ) -> Instant {
        let step = Duration::from_millis(20);
        let mut now = start;
        while now < start + duration {
            for (p, dbov) in who {
                d.observe(&room, *p, *dbov, None, now);
            }
            d.handle_timeout(now);
            now += step;
        }
        now
    }

    /// Runs several rooms' packets at the same time.
    fn talk_rooms(
        d: &mut Detector,
        who: &[(&'static str, u32, u8)],
        start: Instant,
        duration: Duration,
    ) -> Instant {
        let step = Duration::from_millis(20);
        let mut now = start;
        while now < start + duration {
            for (room, p, dbov) in who {
                d.observe(room, *p, *dbov, None, now);
            }
            d.handle_timeout(now);
            now += step;
        }
        now
    }

    fn ids(d: &Detector, room: &'static str) -> Vec<u32> {
        d.speakers(&room).iter().map(|s| s.participant).collect()
    }

    const LOUD: u8 = 20;
    const MEDIUM: u8 = 30;
    const QUIET: u8 = 40;
    const SILENT: u8 = 127;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn levels_map_linearly_in_db() {
        assert_eq!(level_from_dbov(0), 1.0);
        assert_eq!(level_from_dbov(127), 0.0);
        assert!((level_from_dbov(35) - 0.5).abs() < 1e-6);
        assert!(level_from_dbov(20) > level_from_dbov(40));
        assert_eq!(level_from_dbov(255), 0.0, "out of range is silence");
    }

    #[test]
    fn steady_loud_speaker_is_dominant() {
        let mut d = Detector::new(SpeakerConfig::default());
        let t0 = Instant::now();
        let now = talk(&mut d, "r", &[(1, LOUD), (2, SILENT)], t0, MS(1000));
        assert_eq!(d.dominant(&"r"), Some(1));
        assert_eq!(ids(&d, "r"), vec![1]);
        let level = d.speakers(&"r")[0].level;
        assert!(level > 0.5 && level <= 1.0, "{level}");
        // And stays so.
        talk(&mut d, "r", &[(1, LOUD), (2, SILENT)], now, MS(5000));
        assert_eq!(d.dominant(&"r"), Some(1));
    }

    #[test]
    fn nobody_speaks_before_min_speech() {
        let mut d = Detector::new(SpeakerConfig::default());
        let t0 = Instant::now();
        talk(&mut d, "r", &[(1, LOUD)], t0, MS(350));
        assert_eq!(d.dominant(&"r"), None);
        assert!(d.speakers(&"r").is_empty());
    }

    #[test]
    fn a_cough_does_not_steal_the_floor() {
        // Wherever the cough falls relative to the evaluation windows.
        for offset in (0..250).step_by(40) {
            let mut d = Detector::new(SpeakerConfig::default());
            let t0 = Instant::now();
            let now = talk(
                &mut d,
                "r",
                &[(1, MEDIUM), (2, SILENT)],
                t0,
                MS(2000 + offset),
            );
            assert_eq!(d.dominant(&"r"), Some(1));
            // Participant 2 coughs, much louder, for 200 ms.
            let now = talk(&mut d, "r", &[(1, MEDIUM), (2, 5)], now, MS(200));
            let mut t = now;
            for _ in 0..20 {
                t = talk(&mut d, "r", &[(1, MEDIUM), (2, SILENT)], t, MS(100));
                assert_eq!(d.dominant(&"r"), Some(1), "at {:?}", t - now);
                assert!(!ids(&d, "r").contains(&2), "a cough is not speech");
            }
        }
    }

    #[test]
    fn a_sustained_louder_speaker_takes_over_within_two_seconds() {
        let mut d = Detector::new(SpeakerConfig::default());
        let t0 = Instant::now();
        let now = talk(&mut d, "r", &[(1, QUIET), (2, SILENT)], t0, MS(2000));
        assert_eq!(d.dominant(&"r"), Some(1));
        // 2 starts talking louder, 1 goes on.
        let mut t = now;
        let mut took_over = None;
        while t < now + MS(3000) {
            t = talk(&mut d, "r", &[(1, QUIET), (2, LOUD)], t, MS(20));
            if took_over.is_none() && d.dominant(&"r") == Some(2) {
                took_over = Some(t - now);
            }
            if let Some(after) = took_over {
                assert_eq!(d.dominant(&"r"), Some(2), "no flip back ({after:?})");
            }
        }
        let after = took_over.expect("the louder speaker takes over");
        assert!(after >= MS(1000), "not at once: {after:?}");
        assert!(after <= MS(2000), "within two seconds: {after:?}");
        // Both speak: the dominant one first.
        assert_eq!(ids(&d, "r"), vec![2, 1]);
    }

    #[test]
    fn close_levels_do_not_flip_the_dominant_speaker() {
        let mut d = Detector::new(SpeakerConfig::default());
        let t0 = Instant::now();
        let now = talk(&mut d, "r", &[(1, 30)], t0, MS(1000));
        assert_eq!(d.dominant(&"r"), Some(1));
        // 2 joins one dB louder: within the margin, so 1 keeps it.
        let mut t = now;
        for _ in 0..50 {
            t = talk(&mut d, "r", &[(1, 30), (2, 29)], t, MS(100));
            assert_eq!(d.dominant(&"r"), Some(1));
        }
        assert_eq!(ids(&d, "r"), vec![1, 2]);
    }

    #[test]
    fn the_list_does_not_reorder_on_close_levels() {
        let mut d = Detector::new(SpeakerConfig::default());
        let t0 = Instant::now();
        let now = talk(&mut d, "r", &[(1, 10), (2, 30), (3, 31)], t0, MS(1000));
        assert_eq!(ids(&d, "r"), vec![1, 2, 3]);
        // 3 gets one dB louder than 2: no swap; ten dB: swap.
        let now = talk(&mut d, "r", &[(1, 10), (2, 30), (3, 29)], now, MS(2000));
        assert_eq!(ids(&d, "r"), vec![1, 2, 3]);
        talk(&mut d, "r", &[(1, 10), (2, 30), (3, 20)], now, MS(2000));
        assert_eq!(ids(&d, "r"), vec![1, 3, 2]);
    }

    #[test]
    fn silence_clears_the_speaker() {
        let mut d = Detector::new(SpeakerConfig::default());
        let t0 = Instant::now();
        let now = talk(&mut d, "r", &[(1, LOUD)], t0, MS(2000));
        assert_eq!(d.dominant(&"r"), Some(1));
        // A pause shorter than `silence` keeps them.
        let now = talk(&mut d, "r", &[(1, SILENT)], now, MS(800));
        assert_eq!(d.dominant(&"r"), Some(1), "a pause between sentences");
        let now = talk(&mut d, "r", &[(1, LOUD)], now, MS(500));
        // A long silence ends it.
        let now = talk(&mut d, "r", &[(1, SILENT)], now, MS(1600));
        assert_eq!(d.dominant(&"r"), None);
        assert!(d.speakers(&"r").is_empty());
        // Packets that stop altogether (the track went away) end it too,
        // and the detector then has nothing left to do.
        let now = talk(&mut d, "r", &[(1, LOUD)], now, MS(1000));
        assert_eq!(d.dominant(&"r"), Some(1));
        let mut t = now;
        while let Some(at) = d.poll_timeout() {
            assert!(at - now < MS(10_000), "evaluations stop");
            t = at;
            d.handle_timeout(t);
        }
        assert!(t - now <= MS(2000), "{:?}", t - now);
        assert!(d.speakers(&"r").is_empty());
        assert_eq!(d.tracked().count(), 0);
    }

    #[test]
    fn when_the_dominant_speaker_stops_the_next_one_takes_over() {
        let mut d = Detector::new(SpeakerConfig::default());
        let t0 = Instant::now();
        let now = talk(&mut d, "r", &[(1, LOUD), (2, QUIET)], t0, MS(2000));
        assert_eq!(ids(&d, "r"), vec![1, 2]);
        let mut t = now;
        while d.dominant(&"r") == Some(1) {
            t = talk(&mut d, "r", &[(1, SILENT), (2, QUIET)], t, MS(20));
            assert!(t - now < MS(2000), "took too long");
        }
        assert_eq!(d.dominant(&"r"), Some(2));
    }

    #[test]
    fn voice_activity_false_is_not_speech() {
        let mut d = Detector::new(SpeakerConfig::default());
        let mut now = Instant::now();
        for _ in 0..100 {
            d.observe(&"r", 1, LOUD, Some(false), now);
            d.handle_timeout(now);
            now += MS(20);
        }
        assert!(d.speakers(&"r").is_empty());
        for _ in 0..100 {
            d.observe(&"r", 1, LOUD, Some(true), now);
            d.handle_timeout(now);
            now += MS(20);
        }
        assert_eq!(d.dominant(&"r"), Some(1));
    }

    #[test]
    fn removed_participants_stop_counting_at_once() {
        let mut d = Detector::new(SpeakerConfig::default());
        let t0 = Instant::now();
        let now = talk(&mut d, "r", &[(1, LOUD), (2, QUIET)], t0, MS(2000));
        assert_eq!(ids(&d, "r"), vec![1, 2]);
        d.remove(1);
        let now = now + d.config().interval;
        d.handle_timeout(now);
        assert_eq!(ids(&d, "r"), vec![2], "gone at the next evaluation");
        assert_eq!(d.dominant(&"r"), Some(2));
    }

    #[test]
    fn rooms_do_not_mix() {
        let mut d = Detector::new(SpeakerConfig::default());
        let t0 = Instant::now();
        let now = talk_rooms(&mut d, &[("a", 1, LOUD), ("b", 2, QUIET)], t0, MS(2000));
        assert_eq!(ids(&d, "a"), vec![1]);
        assert_eq!(
            ids(&d, "b"),
            vec![2],
            "a quiet speaker is dominant in its own room"
        );
        assert_eq!(d.dominant(&"a"), Some(1));
        assert_eq!(d.dominant(&"b"), Some(2));
        assert!(d.speakers(&"c").is_empty());
        // Moving to another room (a breakout group) starts afresh there:
        // gone from the old room at once, and the floor has to be earned.
        let now = talk_rooms(&mut d, &[("b", 1, LOUD), ("b", 2, QUIET)], now, MS(600));
        assert!(ids(&d, "a").is_empty());
        assert_eq!(d.dominant(&"a"), None);
        assert_eq!(d.dominant(&"b"), Some(2), "1 has to earn it");
        talk_rooms(&mut d, &[("b", 1, LOUD), ("b", 2, QUIET)], now, MS(2000));
        assert_eq!(ids(&d, "b"), vec![1, 2]);
    }

    #[test]
    fn nothing_to_do_without_packets() {
        let mut d = Detector::new(SpeakerConfig::default());
        assert_eq!(d.poll_timeout(), None);
        let now = Instant::now();
        d.observe(&"r", 1, SILENT, None, now);
        assert_eq!(d.poll_timeout(), Some(now + d.config().interval));
        // Before the deadline nothing happens.
        d.handle_timeout(now);
        assert_eq!(d.poll_timeout(), Some(now + d.config().interval));
    }
}
