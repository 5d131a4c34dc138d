//! What the writer decides and learns about each region: how it is saved, and where and with
//! which hash its bytes went. One slot per region, in the scratch area.
//!
//! # Signal-safety fence
//! Plain values in memory the checkpoint mapped itself; nothing here calls anything.

use ckpt_image::MAX_REGIONS;

/// How a region is saved.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Saved {
    /// Nothing to store: PROT_NONE, or kernel data pages that may fault when read.
    Nothing = 0,
    /// Its bytes go into the image.
    Data = 1,
    /// A `MAP_SHARED` mapping of a file that still exists: restart maps the file again.
    FromFile = 2,
    /// A private mapping of a file that still exists, none of whose pages the program wrote:
    /// restart maps the file again, privately (its identity goes into `NT_CKPT_FILEMAPS`).
    PrivateFile = 3,
}

/// What the writer decided and learned about one region: one per region, in the scratch area.
/// All zeros is a valid value (nothing saved).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct RegionSlot {
    pub saved: Saved,
    pub data_hash: u64,
    pub data_offset: u64,
    pub stored_len: u64,
}

impl RegionSlot {
    pub const EMPTY: RegionSlot = RegionSlot { saved: Saved::Nothing, data_hash: 0, data_offset: 0, stored_len: 0 };
}

/// Room for a slot per region an image may hold.
pub const SLOTS: usize = MAX_REGIONS;


#[cfg(test)]
#[allow(unsafe_code)] // reads zeroed bytes as a slot, as the scratch area hands them out
mod tests {
    use super::*;

    #[test]
    fn zeroed_slots_save_nothing() {
        // The scratch area hands out slots as zeroed memory; that must read as "nothing saved".
        let zeros = [0u8; core::mem::size_of::<RegionSlot>()];
        // SAFETY: RegionSlot is repr(C) with a repr(u8) enum whose 0 is a variant, and u64s.
        let slot: RegionSlot = unsafe { core::mem::transmute(zeros) };
        assert!(slot.saved == Saved::Nothing && slot.data_offset == 0 && slot.stored_len == 0);
    }
}
