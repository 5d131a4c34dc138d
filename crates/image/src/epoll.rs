//! `NT_CKPT_EPOLL`: the registrations of the process's epoll instances, to be made again once
//! every descriptor is back: records of [`EPOLL_RECORD_SIZE`] bytes, in the order
//! `/proc/PID/fdinfo` lists them. The note is absent when there are none.

use crate::bytes::{Reader, Records, Writer};
use crate::ImageError;

pub const EPOLL_RECORD_SIZE: usize = 24;

/// One registration: epoll descriptor `epfd` watches descriptor `tfd`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EpollRecord {
    pub epfd: i32,
    pub tfd: i32,
    /// `EPOLLIN`, `EPOLLET`, `EPOLLONESHOT`, `EPOLLEXCLUSIVE`, …, as registered.
    pub events: u32,
    /// The 64-bit user data handed back with each event.
    pub data: u64,
}

impl EpollRecord {
    pub fn write(&self, w: &mut Writer) {
        w.u32(self.epfd as u32);
        w.u32(self.tfd as u32);
        w.u32(self.events);
        w.u32(0);
        w.u64(self.data);
    }

    pub fn read(r: &mut Reader) -> Result<EpollRecord, ImageError> {
        let epfd = r.u32()? as i32;
        let tfd = r.u32()? as i32;
        let events = r.u32()?;
        r.skip(4)?;
        let data = r.u64()?;
        if epfd < 0 || tfd < 0 {
            return Err(ImageError::Malformed("bad epoll registration"));
        }
        Ok(EpollRecord { epfd, tfd, events, data })
    }
}

/// The records of an `NT_CKPT_EPOLL` descriptor.
pub type EpollIter<'a> = Records<'a, EpollRecord>;

/// The records of an encoded `NT_CKPT_EPOLL` descriptor.
pub fn records(desc: &[u8]) -> EpollIter<'_> {
    Records::new(desc, EpollRecord::read)
}
