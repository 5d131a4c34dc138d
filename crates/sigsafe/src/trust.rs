//! Which files a restore takes as they lie: one rule, used by myrestart when it restores, by
//! `ckpt` when it says whether an image is restartable, and by libckpt when it decides whether
//! an image may name a file instead of holding a copy (one others could change is copied).
//! Pure logic over owners and modes.
//!
//! Which files a restore takes as they lie. Restoring runs the image's code, and code from the
//! files it names, with the restarting user's rights, and reads them at leisure: the image's
//! memory is mapped from it and read when first touched. So a file someone else could change
//! is a way into the restored process, even after every check has passed:
//!
//! - the image and its bases must be the user's own and writable by nobody else (the group
//!   included), or the restart is refused unless `--trust-image`; with it, their bytes are
//!   copied into memory of myrestart's own before they are checked, and the program's memory
//!   is read from that copy, never mapped from the files;
//! - a program or library file the image names instead of holding its pages may also be
//!   root's (system libraries are); if others could change it, the pages the region maps are
//!   copied likewise before their hash is checked, and mapped from the copy.
//!
//! Root may change any file, so a file of root's is no weaker than one's own.
//!
//! Files the program had open are its own business, but one was the restarting user's own and
//! is now another user's (root aside) was put at its path by someone else, in a shared
//! directory such as /tmp: the restart refuses it ([`taken_over`]).

/// Why someone besides the restarting user (and root) could change a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doubt {
    /// Another user owns it (and may write it, or let others).
    Owner,
    /// Its group or everyone may write it (`st_mode & 0o022`; with an ACL, its mask).
    Writable,
}

impl core::fmt::Display for Doubt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Doubt::Owner => "is owned by another user",
            Doubt::Writable => "may be written by other users",
        })
    }
}

/// Whether a file owned by `uid` with mode `mode` could be changed by someone other than user
/// `me` and root. With `root_owned_ok`, a file of root's is as good as `me`'s own.
pub fn doubt(uid: u32, mode: u32, me: u32, root_owned_ok: bool) -> Option<Doubt> {
    if uid != me && !(root_owned_ok && uid == 0) {
        Some(Doubt::Owner)
    } else if mode & 0o022 != 0 {
        Some(Doubt::Writable)
    } else {
        None
    }
}

/// Why an image or base image ([`doubt`] without `root_owned_ok`) is not restored unless the
/// user says to trust it: the one sentence myrestart refuses it with and `ckpt` reports.
pub struct Untrusted<'a> {
    /// What the file is to the restart: "the image", "base image NAME".
    pub what: &'a dyn core::fmt::Display,
    pub doubt: Doubt,
    pub uid: u32,
    pub mode: u32,
}

impl core::fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} {} (uid {}, mode {:o}); restoring it would run its code as you: give --trust-image if you mean it",
            self.what, self.doubt, self.uid, self.mode & 0o7777
        )
    }
}

/// An image or base image owned by `uid` with mode `mode`, judged for user `me`: `Some` if it is
/// not to be restored without `--trust-image` (see [`Untrusted`]).
pub fn untrusted_image<'a>(what: &'a dyn core::fmt::Display, uid: u32, mode: u32, me: u32) -> Option<Untrusted<'a>> {
    doubt(uid, mode, me, false).map(|doubt| Untrusted { what, doubt, uid, mode })
}

/// Whether a file owned by `now` at the path where the program had a file owned by `then` was
/// put there by another user while that file was the restarting user's (`me`) own. A file of
/// root's is not counted (root may replace any file: logrotate makes new logs as root), nor is
/// one whose first owner was someone else: the owner a checkpoint sees in a user namespace
/// that does not map it is `nobody`, and so says nothing.
pub fn taken_over(then: u32, now: u32, me: u32) -> bool {
    then == me && now != me && now != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_of_ones_own_or_roots_that_nobody_else_may_write_are_trusted() {
        assert_eq!(doubt(1000, 0o100600, 1000, false), None);
        assert_eq!(doubt(1000, 0o100644, 1000, false), None);
        assert_eq!(doubt(1000, 0o100620, 1000, false), Some(Doubt::Writable));
        assert_eq!(doubt(1000, 0o100602, 1000, false), Some(Doubt::Writable));
        assert_eq!(doubt(1001, 0o100600, 1000, false), Some(Doubt::Owner));
        assert_eq!(doubt(0, 0o100755, 1000, false), Some(Doubt::Owner), "an image of root's, restored by another user");
        assert_eq!(doubt(0, 0o100755, 1000, true), None, "a system library");
        assert_eq!(doubt(0, 0o100777, 1000, true), Some(Doubt::Writable));
        assert_eq!(doubt(0, 0o100600, 0, false), None, "root's own");
    }

    #[test]
    fn an_untrusted_image_is_named_with_its_owner_mode_and_the_way_on() {
        use core::fmt::Write;
        struct Buf([u8; 256], usize);
        impl Write for Buf {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                self.0[self.1..self.1 + s.len()].copy_from_slice(s.as_bytes());
                self.1 += s.len();
                Ok(())
            }
        }
        assert!(untrusted_image(&"the image", 1000, 0o100600, 1000).is_none());
        assert!(untrusted_image(&"the image", 0, 0o100644, 1000).is_some(), "root's image, restored by another user");
        let mut b = Buf([0; 256], 0);
        write!(b, "{}", untrusted_image(&"base image x", 1000, 0o100664, 1000).unwrap()).unwrap();
        assert_eq!(
            core::str::from_utf8(&b.0[..b.1]).unwrap(),
            "base image x may be written by other users (uid 1000, mode 664); restoring it would run its code as you: give --trust-image if you mean it"
        );
    }

    #[test]
    fn only_ones_own_file_taken_over_by_another_user_counts() {
        assert!(!taken_over(1000, 1000, 1000));
        assert!(taken_over(1000, 65534, 1000));
        assert!(!taken_over(1000, 0, 1000), "root's new log after a rotation");
        assert!(!taken_over(1001, 65534, 1000), "a file that was not ours to begin with");
        assert!(taken_over(0, 65534, 0), "root's file, now nobody's");
    }
}
