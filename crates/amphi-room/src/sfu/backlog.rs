//! How far behind a subscriber connection's sending is.
//!
//! str0m paces a connection at 1.1 times its bandwidth estimate. What is
//! written faster than that (a keyframe, a layer the estimate has not caught
//! up with, a link that just got slower) waits in str0m's queue, and every
//! frame written after it waits as long. Left alone the queue grows to
//! str0m's limit of two seconds and is then pushed out faster than the link
//! takes it: the viewer sees seconds of frozen picture after each switch. So
//! while the queue's oldest packet has waited longer than [`CONGESTED`], the
//! layer selector sheds what it can shed without a keyframe (see
//! `layer.rs`) and the allocator moves no track up.

use std::time::Duration;

use str0m::Rtc;
use str0m::media::Mid;

/// How long the oldest queued packet may have waited before the connection
/// counts as congested: a keyframe of a top layer at a good estimate drains
/// well within it.
const CONGESTED: Duration = Duration::from_millis(200);

/// Congested, it counts as drained again only under this: shedding and
/// restoring enhancement frames at every packet around one threshold would
/// make the frame rate flicker.
const DRAINED: Duration = Duration::from_millis(100);

/// How long the oldest packet queued for `mid` had waited when str0m's
/// pacer last looked (zero: nothing queued).
fn of(rtc: &mut Rtc, mid: Mid) -> Duration {
    let mut api = rtc.direct_api();
    let Some(info) = api
        .stream_tx_by_mid(mid, None)
        .and_then(|stream| stream.queue_info())
    else {
        return Duration::ZERO;
    };
    // Measured at the sample, not now: a stale sample must not make an
    // emptied queue look ever older.
    info.first_unsent().map_or(Duration::ZERO, |first| {
        info.created_at().saturating_duration_since(first)
    })
}

/// Whether `mid`'s queue on this connection backs up, given whether it did
/// before.
pub(super) fn congested(rtc: &mut Rtc, mid: Mid, was: bool) -> bool {
    let waited = of(rtc, mid);
    waited >= CONGESTED || (was && waited > DRAINED)
}
