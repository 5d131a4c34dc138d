//! The threads of a process, as `/proc/PID/task` lists them, read into a stack buffer: the one
//! listing libckpt's checkpoint code uses (to stop the threads, to count them, to find the
//! children of every thread of a process).

use crate::proctext::{numbered_path, parse_dec};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// Calls `each` with the ID of every thread of process `pid` (`None`: this process, through
/// `/proc/self/task`, which names this process whatever PID namespace `/proc` belongs to), until
/// one call returns an error, which is then returned inside `Ok`. `Err` when the listing cannot
/// be opened or read. A thread created during the listing may or may not be in it: a caller that
/// must see them all lists again until nothing is new.
pub fn each_thread<E>(pid: Option<u32>, mut each: impl FnMut(u32) -> Result<(), E>) -> Result<Result<(), E>, Errno> {
    let mut path = [0u8; 64];
    let dir = match pid {
        None => c"/proc/self/task",
        Some(pid) => numbered_path(&mut path, b"/proc/", pid as u64, b"/task").ok_or(Errno::NAMETOOLONG)?,
    };
    let dir = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut buf = [core::mem::MaybeUninit::<u8>::uninit(); 2048];
    let mut entries = rustix::fs::RawDir::new(&dir, &mut buf);
    while let Some(e) = entries.next() {
        // `.` and `..` are the only names that are not numbers.
        let Some(tid) = parse_dec(e?.file_name().to_bytes()) else { continue };
        if let Err(e) = each(tid as u32) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_lists_its_own_thread() {
        let me = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let mut seen = false;
        let mut n = 0;
        super::each_thread(None, |t| {
            seen |= t == me;
            n += 1;
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
        assert!(seen && n >= 1);
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
        assert_eq!(super::each_thread(Some(pid), |t| if t == me { Err(t) } else { Ok(()) }), Ok(Err(me)));
    }
}
