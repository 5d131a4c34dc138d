//! `NT_CKPT_TIMERFDS`: one record per timerfd (the lowest descriptor of each), with its clock
//! and times, [`TIMERFD_RECORD_SIZE`] bytes each. The note is absent when there are none.

use crate::bytes::{Reader, Records, Writer};
use crate::ImageError;

pub const TIMERFD_RECORD_SIZE: usize = 56;
/// `flags` bits, the kernel's `TFD_TIMER_*`.
pub const TFD_TIMER_ABSTIME: u32 = 1;
pub const TFD_TIMER_CANCEL_ON_SET: u32 = 2;

/// One timerfd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerFdRecord {
    pub fd: i32,
    pub clock: u32,
    /// How it was last set (`TFD_TIMER_ABSTIME`, `TFD_TIMER_CANCEL_ON_SET`).
    pub flags: u32,
    /// Expirations not yet read.
    pub ticks: u64,
    /// With `TFD_TIMER_ABSTIME`: the deadline on `clock`; otherwise the time left. Zero when
    /// disarmed.
    pub value_sec: i64,
    pub value_nsec: i64,
    pub interval_sec: i64,
    pub interval_nsec: i64,
}

impl TimerFdRecord {
    pub fn write(&self, w: &mut Writer) {
        w.u32(self.fd as u32);
        w.u32(self.clock);
        w.u32(self.flags);
        w.u32(0);
        w.u64(self.ticks);
        w.u64(self.value_sec as u64);
        w.u64(self.value_nsec as u64);
        w.u64(self.interval_sec as u64);
        w.u64(self.interval_nsec as u64);
    }

    pub fn read(r: &mut Reader) -> Result<TimerFdRecord, ImageError> {
        let fd = r.u32()? as i32;
        let clock = r.u32()?;
        let flags = r.u32()?;
        r.skip(4)?;
        let t = TimerFdRecord {
            fd,
            clock,
            flags,
            ticks: r.u64()?,
            value_sec: r.u64()? as i64,
            value_nsec: r.u64()? as i64,
            interval_sec: r.u64()? as i64,
            interval_nsec: r.u64()? as i64,
        };
        let times_ok = crate::timers::times_ok([(t.interval_sec, t.interval_nsec), (t.value_sec, t.value_nsec)]);
        if fd < 0 || flags & !(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET) != 0 || !times_ok {
            return Err(ImageError::Malformed("bad timerfd record"));
        }
        Ok(t)
    }
}

/// The records of an `NT_CKPT_TIMERFDS` descriptor.
pub type TimerFdIter<'a> = Records<'a, TimerFdRecord>;

pub fn records(desc: &[u8]) -> TimerFdIter<'_> {
    Records::new(desc, TimerFdRecord::read)
}
