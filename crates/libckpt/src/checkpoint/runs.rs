//! Runs of pages stored elsewhere, as an `NT_CKPT_SHARED` note lists them: [`Runs`] builds
//! the note's descriptor page by page (a tree member's pages the root stores, an incremental
//! image's pages a base holds), [`RunCursor`] walks a finished one while regions are written.
//!
//! # Signal-safety fence
//! Runs in the writer (or the handler, with `CKPT_SYNC`): encoding into and reading from
//! caller-owned buffers; no allocation, no locks, no libc.

use ckpt_image::bytes::Writer;
use ckpt_image::shared::{SharedRun, MAX_SHARED_RUNS, SHARED_HEADER_SIZE, SHARED_RECORD_SIZE};

/// Builds a part's `NT_CKPT_SHARED` descriptor in a buffer, page by page, merging neighbours.
pub struct Runs<'b> {
    buf: &'b mut [u8],
    count: usize,
    cur: Option<SharedRun>,
}

impl<'b> Runs<'b> {
    pub fn new(buf: &'b mut [u8]) -> Runs<'b> {
        Runs { buf, count: 0, cur: None }
    }

    /// Whether another page can be recorded (the table is not full).
    pub fn room(&self) -> bool {
        self.count < MAX_SHARED_RUNS.min((self.buf.len() - SHARED_HEADER_SIZE) / SHARED_RECORD_SIZE)
    }

    /// Page `page` of region `region` is the root's, at `offset`. Returns false (and records
    /// nothing) when the table is full and the page would need a run of its own.
    pub fn add(&mut self, region: u32, page: u64, offset: u64) -> bool {
        self.add_from(0, region, page, offset)
    }

    /// Page `page` of region `region` is in `source` (0: the root's copy; k: base k) at `offset`.
    pub fn add_from(&mut self, source: u32, region: u32, page: u64, offset: u64) -> bool {
        self.add_many(source, region, page, offset, 1)
    }

    /// Pages `page..page + pages` of region `region` are in `source`, one after another from
    /// `offset`.
    pub fn add_many(&mut self, source: u32, region: u32, page: u64, offset: u64, pages: u64) -> bool {
        if let Some(c) = &mut self.cur {
            if c.source == source && c.region == region && c.first_page + c.pages == page && c.offset + c.bytes() == offset {
                c.pages += pages;
                return true;
            }
        }
        self.flush();
        if !self.room() {
            return false;
        }
        self.cur = Some(SharedRun { region, first_page: page, pages, offset, source });
        true
    }

    fn flush(&mut self) {
        if let Some(c) = self.cur.take() {
            let at = SHARED_HEADER_SIZE + SHARED_RECORD_SIZE * self.count;
            c.write(&mut Writer::new(&mut self.buf[at..at + SHARED_RECORD_SIZE]));
            self.count += 1;
        }
    }

    /// Ends the table: the descriptor's length (0 when no page is shared).
    pub fn finish(mut self) -> usize {
        self.flush();
        if self.count == 0 {
            return 0;
        }
        ckpt_image::shared::write_header(&mut Writer::new(&mut self.buf[..SHARED_HEADER_SIZE]), self.count);
        ckpt_image::shared::note_len(self.count)
    }
}

/// Walks the runs of a finished descriptor alongside the regions and pages being written, in
/// order: says which pages are the root's and so are not stored.
pub struct RunCursor<'a> {
    runs: ckpt_image::bytes::Records<'a, SharedRun>,
    next: Option<SharedRun>,
}

impl<'a> RunCursor<'a> {
    pub fn new(desc: &'a [u8]) -> RunCursor<'a> {
        let mut runs = match ckpt_image::shared::records(desc) {
            Ok(r) => r,
            Err(_) => ckpt_image::bytes::Records::new(&[], SharedRun::read),
        };
        let next = runs.next().and_then(Result::ok);
        RunCursor { runs, next }
    }

    /// Whether page `page` of region `region` is in a run; calls go up in (region, page).
    pub fn covers(&mut self, region: u32, page: u64) -> bool {
        while let Some(r) = self.next {
            if (r.region, r.first_page + r.pages) > (region, page) {
                return r.region == region && r.first_page <= page;
            }
            self.next = self.runs.next().and_then(Result::ok);
        }
        false
    }

    /// Whether pages `first..first + n` of region `region` are all in one run; calls go up in
    /// (region, page), as for [`RunCursor::covers`].
    pub fn covers_all(&mut self, region: u32, first: u64, n: u64) -> bool {
        if !self.covers(region, first) {
            return false;
        }
        self.next.is_some_and(|r| r.region == region && r.first_page + r.pages >= first + n)
    }

    /// Whether region `region` has any run.
    pub fn any_in(&mut self, region: u32) -> bool {
        while let Some(r) = self.next {
            if r.region >= region {
                return r.region == region;
            }
            self.next = self.runs.next().and_then(Result::ok);
        }
        false
    }
}
