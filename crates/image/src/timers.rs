//! `NT_CKPT_TIMERS`: the process's POSIX timers (`timer_create`), each to be created again with
//! its ID, clock, notification and remaining time. The note is absent when there are none.
//!
//! The descriptor is the records back to back, [`TIMER_RECORD_SIZE`] bytes each.

use crate::bytes::{Reader, Records, Writer};
use crate::ImageError;

pub const TIMER_RECORD_SIZE: usize = 64;
/// `sigev_notify` values this format keeps (the kernel's `SIGEV_*`).
pub const SIGEV_SIGNAL: u32 = 0;
pub const SIGEV_NONE: u32 = 1;
pub const SIGEV_THREAD_ID: u32 = 4;

/// One timer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerRecord {
    /// The `timer_t` the program holds.
    pub id: i32,
    pub clock: i32,
    /// `SIGEV_SIGNAL`, `SIGEV_NONE`, or `SIGEV_SIGNAL | SIGEV_THREAD_ID` (then `tid` is the
    /// thread it signals).
    pub notify: u32,
    pub signo: u32,
    pub tid: u32,
    /// `sigev_value`, handed to the handler in `si_value`.
    pub value: u64,
    /// Interval and time left, as `struct itimerspec` (seconds, nanoseconds).
    pub interval_sec: i64,
    pub interval_nsec: i64,
    pub value_sec: i64,
    pub value_nsec: i64,
}

impl TimerRecord {
    pub fn write(&self, w: &mut Writer) {
        w.u32(self.id as u32);
        w.u32(self.clock as u32);
        w.u32(self.notify);
        w.u32(self.signo);
        w.u32(self.tid);
        w.u32(0);
        w.u64(self.value);
        w.u64(self.interval_sec as u64);
        w.u64(self.interval_nsec as u64);
        w.u64(self.value_sec as u64);
        w.u64(self.value_nsec as u64);
    }

    pub fn read(r: &mut Reader) -> Result<TimerRecord, ImageError> {
        let t = TimerRecord {
            id: r.u32()? as i32,
            clock: r.u32()? as i32,
            notify: r.u32()?,
            signo: r.u32()?,
            tid: r.u32()?,
            value: {
                r.skip(4)?;
                r.u64()?
            },
            interval_sec: r.u64()? as i64,
            interval_nsec: r.u64()? as i64,
            value_sec: r.u64()? as i64,
            value_nsec: r.u64()? as i64,
        };
        let notify_ok = matches!(t.notify, SIGEV_SIGNAL | SIGEV_NONE) || t.notify == SIGEV_SIGNAL | SIGEV_THREAD_ID;
        let signal_ok = t.notify == SIGEV_NONE || (1..=64).contains(&t.signo);
        let times_ok = times_ok([(t.interval_sec, t.interval_nsec), (t.value_sec, t.value_nsec)]);
        if t.id < 0 || !notify_ok || !signal_ok || !times_ok {
            return Err(ImageError::Malformed("bad timer record"));
        }
        Ok(t)
    }
}

/// Whether each `(seconds, nanoseconds)` pair is a valid, non-negative `struct timespec`.
pub(crate) fn times_ok(times: [(i64, i64); 2]) -> bool {
    times.iter().all(|&(s, n)| s >= 0 && (0..1_000_000_000).contains(&n))
}

/// The records of an `NT_CKPT_TIMERS` descriptor.
pub type TimerIter<'a> = Records<'a, TimerRecord>;

/// The records of an encoded `NT_CKPT_TIMERS` descriptor.
pub fn records(desc: &[u8]) -> TimerIter<'_> {
    Records::new(desc, TimerRecord::read)
}
